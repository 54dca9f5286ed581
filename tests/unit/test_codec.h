/*
 * test_codec.h - what the codec's tests share. unit_codec is one binary
 * built from test_codec_frames.c (framing, client frames, the arena and
 * encoding; it defines CHECK_MAIN), test_codec_records.c (server frames
 * and internal records) and test_codec_strings.c (strings on the wire).
 * Validation must agree on both ends: what pl_client_frame_validate says
 * of a frame, decoding it says too.
 */
#ifndef PARLEY_TEST_CODEC_H
#define PARLEY_TEST_CODEC_H

#include "tests/check.h"

#include "proto/codec.h"

#define ROOM_OK "0001000000000007"
#define FRAME_CAP (256 * 1024)

#endif /* PARLEY_TEST_CODEC_H */
