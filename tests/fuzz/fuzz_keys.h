/*
 * fuzz_keys.h - what the frame fuzzer and its seed generator share: the
 * selectors that pick a decoder from an input's first byte, and the fixed
 * key the token path verifies against (so seeds can hold valid tokens).
 */
#ifndef PARLEY_FUZZ_KEYS_H
#define PARLEY_FUZZ_KEYS_H

#include <sodium.h>

enum fuzz_selector {
	FUZZ_STREAM,       /* length-prefixed client frames, as on TCP */
	FUZZ_CLIENT_FRAME, /* one ClientFrame payload */
	FUZZ_SERVER_FRAME,
	FUZZ_GW_BATCH,
	FUZZ_COMMAND,
	FUZZ_BROKER_BATCH,
	FUZZ_ROOM_REC,
	FUZZ_CLAIMS,
	FUZZ_PEER_BATCH,
	FUZZ_TOKEN, /* hello token text */
	FUZZ_TENANT_DAY_REC,
	FUZZ_SELECTORS
};

#define FUZZ_TENANT "fuzz"
#define FUZZ_KEY_ID "k1"
#define FUZZ_NOW_S 1800000000

/* A deterministic key pair: fuzzing must be reproducible. */
static inline void fuzz_keypair(unsigned char pk[32], unsigned char sk[64])
{
	unsigned char seed[crypto_sign_SEEDBYTES];
	for (size_t i = 0; i < sizeof(seed); i++)
		seed[i] = (unsigned char)(i * 7 + 1);
	crypto_sign_seed_keypair(pk, sk, seed);
}

#endif /* PARLEY_FUZZ_KEYS_H */
