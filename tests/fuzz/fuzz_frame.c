/*
 * fuzz_frame.c - libFuzzer target for every decoder that reads bytes from
 * a socket or a disk. The first input byte picks the decoder (see
 * fuzz_keys.h); the rest is its input. Besides "no crash, no leak, no
 * out-of-bounds", it checks that a client frame the codec accepts
 * re-encodes into one the codec accepts again.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/codec.h"
#include "tests/fuzz/fuzz_keys.h"
#include "proto/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decoding with an arena of exactly the advertised size lets ASan see any
 * write past it. */
static pl_arena arena_new(size_t len)
{
	pl_arena a;
	PL_ASSERT(pl_arena_init(&a, NULL, PL_ARENA_BYTES_FOR(len)) == PL_OK);
	return a;
}

/* An accepted frame must survive encode -> decode unchanged in status.
 * The arena is at least the first one: the canonical encoding may be
 * shorter than the input (repeated fields collapse) for the same struct. */
static void client_frame_reencode(const Parley__ClientFrame *f, size_t orig)
{
	size_t cap = protobuf_c_message_get_packed_size(&f->base), n;
	uint8_t *buf = malloc(cap + 1);
	PL_ASSERT(buf != NULL);
	PL_ASSERT(pl_pb_encode(&f->base, buf, cap + 1, &n) == PL_OK);
	pl_arena a = arena_new(n > orig ? n : orig);
	Parley__ClientFrame *again;
	PL_ASSERT(pl_client_frame_decode(buf, n, n, &a, &again) == PL_OK);
	PL_ASSERT(again->body_case == f->body_case && again->id == f->id);
	pl_arena_fini(&a);
	free(buf);
}

/* The broker decodes GwBatch with its own allocator
 * (pl_gw_batch_decode_with): both decoders must agree on what they
 * accept. The arena one may also refuse for want of arena (too_large). */
static void gw_batch_both(const uint8_t *data, size_t size, pl_arena *a)
{
	Parley__Internal__GwBatch *gb, *gb2;
	pl_status st = pl_gw_batch_decode(data, size, a, &gb);
	pl_status st2 = pl_gw_batch_decode_with(data, size, NULL, &gb2);
	PL_ASSERT(st != PL_OK || st2 == PL_OK);
	PL_ASSERT(st2 != PL_OK || st == PL_OK || st == PL_E_TOO_LARGE);
	if (st2 == PL_OK) {
		PL_ASSERT(gb2->n_reqs <= PL_GW_BATCH_REQS_MAX);
		PL_ASSERT(gb2->gateway != NULL && gb2->gateway[0] != '\0');
		parley__internal__gw_batch__free_unpacked(gb2, NULL);
	}
}

/* An accepted frame's strings are whole on the wire: none holds a NUL
 * or invalid UTF-8. A refused one says why in a terminated text. */
static void fuzz_client_frame(const uint8_t *data, size_t size)
{
	pl_arena a = arena_new(size);
	Parley__ClientFrame *f;
	pl_why why = {{0}};
	if (pl_client_frame_decode_why(data, size,
	        PL_CLIENT_FRAME_BYTES_DEFAULT, &a, &f, &why) == PL_OK) {
		PL_ASSERT(
		    pl_wire_strings_check(&parley__client_frame__descriptor,
		        data, size, NULL) == PL_OK);
		client_frame_reencode(f, size);
	} else {
		PL_ASSERT(
		    why.text[0] != '\0' &&
		    strnlen(why.text, sizeof(why.text)) < sizeof(why.text));
	}
	pl_arena_fini(&a);
}

/* Reads frames one after another as a gateway does from a TCP stream. */
static void fuzz_stream(const uint8_t *data, size_t size)
{
	size_t n;
	while (pl_frame_peek(data, size, PL_CLIENT_FRAME_BYTES_DEFAULT, &n) ==
	       PL_OK) {
		PL_ASSERT(n > 0 && n + PL_FRAME_HEADER_BYTES <= size);
		fuzz_client_frame(data + PL_FRAME_HEADER_BYTES, n);
		data += PL_FRAME_HEADER_BYTES + n;
		size -= PL_FRAME_HEADER_BYTES + n;
	}
}

static void fuzz_token(const uint8_t *data, size_t size)
{
	static pl_keyring *kr;
	if (kr == NULL) {
		uint8_t pk[32], sk[64];
		PL_ASSERT(sodium_init() >= 0);
		fuzz_keypair(pk, sk);
		kr = calloc(1, sizeof(*kr));
		PL_ASSERT(kr != NULL);
		PL_ASSERT(
		    pl_keyring_add(kr, FUZZ_TENANT, FUZZ_KEY_ID, pk) == PL_OK);
	}
	char *tok = malloc(size + 1);
	PL_ASSERT(tok != NULL);
	memcpy(tok, data, size);
	tok[size] = '\0';
	pl_claims c;
	if (pl_token_verify(kr, tok, FUZZ_NOW_S, &c) == PL_OK)
		PL_ASSERT(strcmp(c.tenant, FUZZ_TENANT) == 0 && c.role > 0);
	free(tok);
}

/* One decoder of an internal record: what it returns is only looked at
 * by the sanitizers. */
static void fuzz_record(int sel, const uint8_t *data, size_t size)
{
	pl_arena a = arena_new(size);
	Parley__ServerFrame *sf;
	Parley__Internal__Command *cmd;
	Parley__Internal__PeerBatch *pb;
	Parley__Internal__BrokerBatch *bb;
	Parley__Internal__TenantDayRec *td;
	Parley__Internal__RoomRec *rr;
	Parley__Internal__Claims *cl;
	switch (sel) {
	case FUZZ_SERVER_FRAME:
		(void)pl_server_frame_decode(
		    data, size, PL_FRAME_BYTES_CEIL, &a, &sf);
		break;
	case FUZZ_GW_BATCH:
		gw_batch_both(data, size, &a);
		break;
	case FUZZ_COMMAND:
		(void)pl_command_decode(data, size, &a, &cmd);
		break;
	case FUZZ_PEER_BATCH:
		(void)pl_peer_batch_decode(data, size, &a, &pb);
		break;
	case FUZZ_BROKER_BATCH:
		(void)pl_broker_batch_decode(data, size, &a, &bb);
		break;
	case FUZZ_ROOM_REC:
		(void)pl_room_rec_decode(data, size, &a, &rr);
		break;
	case FUZZ_TENANT_DAY_REC:
		(void)pl_tenant_day_rec_decode(data, size, &a, &td);
		break;
	default:
		(void)pl_claims_decode(data, size, &a, &cl);
		break;
	}
	pl_arena_fini(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int sel = data[0] % FUZZ_SELECTORS;
	data++;
	size--;
	if (sel == FUZZ_STREAM)
		fuzz_stream(data, size);
	else if (sel == FUZZ_CLIENT_FRAME)
		fuzz_client_frame(data, size);
	else if (sel == FUZZ_TOKEN)
		fuzz_token(data, size);
	else
		fuzz_record(sel, data, size);
	return 0;
}
