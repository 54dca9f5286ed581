/*
 * token.h - minting and verifying tenant tokens: base64url(Claims
 * protobuf) "." base64url(Ed25519 signature over those bytes), both
 * without padding. The claims and keyring types are in common/common.h.
 */
#ifndef PARLEY_PROTO_TOKEN_H
#define PARLEY_PROTO_TOKEN_H

#include "common/common.h"

/* Signs claims with the 64-byte libsodium Ed25519 secret key; writes a NUL
 * terminated token into out (cap bytes). PL_E_TOO_LARGE if it won't fit. */
pl_status pl_token_mint(
    const pl_claims *c, const uint8_t sk[64], char *out, size_t cap);

/* Verifies a token against the keyring at time now_s. On success fills
 * *out. Errors: PL_E_UNAUTHORIZED (malformed, unknown tenant or key, bad
 * signature, expired, bad role, a claim that is not UTF-8 without NUL).
 * Never reads past the NUL of token. pl_token_verify_why also says which
 * of those it was in *why (a static text; why may be NULL). */
pl_status pl_token_verify(
    const pl_keyring *kr, const char *token, int64_t now_s, pl_claims *out);
pl_status pl_token_verify_why(const pl_keyring *kr, const char *token,
    int64_t now_s, pl_claims *out, const char **why);

#endif
