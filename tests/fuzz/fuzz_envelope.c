/*
 * fuzz_envelope.c - libFuzzer target for the peer envelope
 * (broker/envelope.c): every byte another broker sends goes through
 * brk_envelope_open. The first input byte picks how the rest arrives:
 *
 *   0  as a whole sealed message (the seal must refuse it: random bytes
 *      do not carry the cluster key's MAC)
 *   1  as the payload inside a valid seal (flag, size, zstd, codec)
 *   2  as a PeerBatch, compressed and sealed as a peer would
 *   3  as 2 with the declared size off by the second byte (signed)
 *
 * Besides "no crash, no leak, no out-of-bounds": what opens is a batch of
 * the receiver's group from a replica of it, and a batch packed with
 * brk_envelope_pack opens again to the same messages (or needs more arena
 * than its packed length allows, see repack_refused).
 */
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "broker/envelope.h"

#define GROUP 1
#define SENDER (((uint64_t)GROUP << 16) | 2)
#define RECEIVER (((uint64_t)GROUP << 16) | 1)
#define NOW_S 1800000000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static brk_auth tx, rx;
static brk_envelope env;
static uint8_t *sealed;
static bool ready;

static void setup(void)
{
	uint8_t key[BRK_SECRET_BYTES];
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(i * 13 + 5);
	PL_ASSERT(brk_auth_init(&tx, key, SENDER, NOW_S) == PL_OK);
	PL_ASSERT(brk_auth_init(&rx, key, RECEIVER, NOW_S) == PL_OK);
	PL_ASSERT(brk_envelope_init(&env) == PL_OK);
	sealed = malloc(PL_FRAME_BYTES_CEIL + BRK_AUTH_OVERHEAD);
	PL_ASSERT(sealed != NULL);
	ready = true;
}

/*
 * The one reason a repacked batch may fail to open: its arena bound
 * (PL_ARENA_BYTES_FOR of the packed length) is below what unpacking it
 * takes. A hostile batch can pad itself with redundant fields protobuf-c
 * drops on repacking (a repeated `group`) and so fit the bound that its
 * denser repack misses; the broker never repacks a batch it received, so
 * this costs nothing real. With an arena as large as the first decode
 * used, the repack must decode.
 */
static void repack_refused(const Parley__Internal__PeerBatch *b, size_t used)
{
	size_t n = parley__internal__peer_batch__get_packed_size(b);
	PL_ASSERT(PL_ARENA_BYTES_FOR(n) < used);
	uint8_t *buf = malloc(n ? n : 1);
	PL_ASSERT(buf != NULL);
	PL_ASSERT(parley__internal__peer_batch__pack(b, buf) == n);
	pl_arena big;
	Parley__Internal__PeerBatch *again;
	PL_ASSERT(pl_arena_init(&big, NULL, used + 64) == PL_OK);
	PL_ASSERT(pl_peer_batch_decode(buf, n, &big, &again) == PL_OK &&
	          again->n_chunks == b->n_chunks && again->n_msgs == b->n_msgs);
	pl_arena_fini(&big);
	free(buf);
}

/* Opens n sealed bytes; checks what an accepted batch promises. */
static void open_and_check(const uint8_t *msg, size_t n)
{
	pl_arena a;
	uint8_t *raw = NULL;
	uint64_t sender;
	Parley__Internal__PeerBatch *b;
	if (brk_envelope_open(
	        &env, &rx, GROUP, msg, n, &a, &raw, &sender, &b) != PL_OK)
		return;
	PL_ASSERT(sender == SENDER && b->group == GROUP);
	for (size_t i = 0; i < b->n_msgs; i++)
		PL_ASSERT(b->msgs[i] != NULL && b->msgs[i]->type != 0);
	/* Packed again by the sender's code, it opens to the same batch. */
	size_t len, got;
	if (brk_envelope_pack(&env, b, &len) == PL_OK) {
		PL_ASSERT(brk_envelope_seal(&env, &tx, sealed,
		              PL_FRAME_BYTES_CEIL + BRK_AUTH_OVERHEAD,
		              &got) == PL_OK &&
		          got == len);
		pl_arena a2;
		uint8_t *raw2 = NULL;
		Parley__Internal__PeerBatch *b2;
		if (brk_envelope_open(&env, &rx, GROUP, sealed, len, &a2,
		        &raw2, &sender, &b2) == PL_OK) {
			PL_ASSERT(b2->n_msgs == b->n_msgs &&
			          b2->n_chunks == b->n_chunks &&
			          b2->n_acks == b->n_acks);
			pl_arena_fini(&a2);
			free(raw2);
		} else {
			repack_refused(b, a.used);
		}
	}
	pl_arena_fini(&a);
	free(raw);
}

/* Seals payload (n bytes) as the sender would, then opens it. */
static void seal_and_open(const uint8_t *payload, size_t n)
{
	size_t got;
	if (brk_auth_seal(&tx, payload, n, sealed,
	        PL_FRAME_BYTES_CEIL + BRK_AUTH_OVERHEAD, &got) != PL_OK)
		return;
	open_and_check(sealed, got);
}

/* Compresses a PeerBatch's bytes under a header declaring raw + delta. */
static void compressed(const uint8_t *batch, size_t n, int delta)
{
	size_t cap = ZSTD_compressBound(n) + BRK_ENVELOPE_HEADER_BYTES;
	uint8_t *p = malloc(cap);
	PL_ASSERT(p != NULL);
	size_t z = ZSTD_compress(p + BRK_ENVELOPE_HEADER_BYTES,
	    cap - BRK_ENVELOPE_HEADER_BYTES, batch, n, 1);
	PL_ASSERT(!ZSTD_isError(z));
	uint32_t decl = (uint32_t)((int64_t)n + delta);
	p[0] = 1;
	p[1] = (uint8_t)(decl >> 24);
	p[2] = (uint8_t)(decl >> 16);
	p[3] = (uint8_t)(decl >> 8);
	p[4] = (uint8_t)decl;
	seal_and_open(p, z + BRK_ENVELOPE_HEADER_BYTES);
	free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ready)
		setup();
	if (size < 1 || size > PL_FRAME_BYTES_CEIL / 2)
		return 0;
	switch (data[0] % 4) {
	case 0:
		open_and_check(data + 1, size - 1);
		break;
	case 1:
		seal_and_open(data + 1, size - 1);
		break;
	case 2:
		compressed(data + 1, size - 1, 0);
		break;
	default:
		if (size >= 2)
			compressed(data + 2, size - 2, (int8_t)data[1]);
		break;
	}
	return 0;
}
