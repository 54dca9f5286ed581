/*
 * frame.c - the frame box: one decoded server frame with its own arena,
 * so the frame handed to the application is freed in one call. The box
 * is marked by a magic number checked wherever a frame comes back.
 */
#include <stdlib.h>

#include "client/conn.h"

#define BOX_MAGIC 0x706c6278u /* "plbx" */

void parley_box_free(frame_box *b)
{
	if (b == NULL)
		return;
	PL_ASSERT(b->magic == BOX_MAGIC);
	pl_arena_fini(&b->arena);
	b->magic = 0;
	free(b);
}

void parley_frame_free(Parley__ServerFrame *f)
{
	parley_box_free((frame_box *)f);
}

int64_t parley_frame_recv_us(const Parley__ServerFrame *f)
{
	const frame_box *b = (const frame_box *)f;
	PL_ASSERT(b->magic == BOX_MAGIC);
	return b->recv_us;
}

/* Decodes one payload into a new box with an arena of cap bytes. */
pl_status parley_box_decode(
    parley_conn *c, const uint8_t *p, size_t n, size_t cap, frame_box **out)
{
	frame_box *b = malloc(sizeof(*b) + cap);
	if (b == NULL)
		return PL_E_NOMEM;
	pl_status st = pl_arena_init(&b->arena, b->mem, cap);
	if (st != PL_OK) {
		free(b);
		return st;
	}
	b->magic = BOX_MAGIC;
	Parley__ServerFrame *f;
	st = pl_server_frame_decode(p, n, c->recv_max, &b->arena, &f);
	if (st != PL_OK) {
		parley_box_free(b);
		return st;
	}
	b->frame = *f;
	b->recv_us = pl_mono_us();
	*out = b;
	return PL_OK;
}
