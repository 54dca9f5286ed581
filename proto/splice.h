/*
 * splice.h - the few records Parley writes by splicing already-packed
 * messages together instead of unpacking and re-encoding them: a
 * gateway's GwBatch (each request was packed once when it was queued) and
 * a broker's BrokerBatch event feed (each event is packed once and copied
 * to every gateway that watches its room). Protobuf allows fields in any
 * order and a repeated message field as concatenated records, so each is
 * a record protobuf-c itself would decode to the same message.
 *
 * The field numbers are named here and nowhere else; tests/unit/
 * test_splice.c checks each against the generated descriptor, so a change
 * to internal.proto that moves one fails a test instead of a cluster.
 */
#ifndef PARLEY_PROTO_SPLICE_H
#define PARLEY_PROTO_SPLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* internal.proto field numbers (checked by test_splice.c). */
#define PL_FIELD_GW_BATCH_GATEWAY 1
#define PL_FIELD_GW_BATCH_REQS 2
#define PL_FIELD_GW_BATCH_GROUP 6
#define PL_FIELD_GW_REQUEST_ID 1
#define PL_FIELD_BROKER_BATCH_EVENTS 2
#define PL_FIELD_BROKER_BATCH_EPOCH 3
#define PL_FIELD_BROKER_BATCH_OVERFLOW 4
#define PL_FIELD_BROKER_BATCH_GROUP 5

/* A field's key and a length prefix fit in this many bytes. */
#define PL_SPLICE_HEADER_BYTES_MAX 11

/* Bytes of v as a protobuf varint (1..10). */
size_t pl_varint_len(uint64_t v);
/* Writes v as a varint at p; returns the bytes written. */
size_t pl_varint_put(uint8_t *p, uint64_t v);

/* ---- GwBatch: gateway (field 1), then one record per request ---- */

/* Bytes of GwBatch field 1 holding the gateway id. */
size_t pl_splice_gw_batch_gateway_len(const char *gateway);
/* Writes it at p; returns the bytes written. */
size_t pl_splice_gw_batch_gateway(uint8_t *p, const char *gateway);

/* GwBatch field 6, the group, written first (PL_SPLICE_HEADER_BYTES_MAX
 * bytes at most); returns the bytes written. Group 0 is the default
 * and, as protobuf does, writes nothing. */
size_t pl_splice_gw_batch_group(uint8_t *p, uint32_t group);
/* The group of an encoded GwBatch, read without decoding it: the last
 * field 6 seen while skipping the others (0 when none). PL_E_PROTO when
 * the bytes are not a well-formed sequence of fields. */
pl_status pl_splice_gw_batch_group_peek(
    const uint8_t *b, size_t n, uint32_t *group);

/* Bytes of one GwBatch.reqs record: a GwRequest packed without its id
 * (body, n bytes) with field 1 (id) put in front. */
size_t pl_splice_gw_request_len(uint64_t id, size_t n);
/* Writes it at p; returns the bytes written. */
size_t pl_splice_gw_request(
    uint8_t *p, uint64_t id, const uint8_t *body, size_t n);

/* ---- BrokerBatch: events (field 2), then the feed's tail ---- */

/* Writes the key and length of one BrokerBatch.events record holding an
 * event of n packed bytes into hdr; returns its bytes. */
size_t pl_splice_event_header(
    uint8_t hdr[PL_SPLICE_HEADER_BYTES_MAX], size_t n);

/* Bytes the tail below needs at most for an epoch of epoch_len bytes. */
#define PL_SPLICE_FEED_TAIL_BYTES(epoch_len)                                   \
	(PL_SPLICE_HEADER_BYTES_MAX + (epoch_len) + 2 + 11)

/* Writes a feed's tail: epoch (field 3), overflow (field 4) when set,
 * group (field 5). p holds PL_SPLICE_FEED_TAIL_BYTES(strlen(epoch)).
 * Returns the bytes written. */
size_t pl_splice_feed_tail(
    uint8_t *p, const char *epoch, bool overflow, uint32_t group);

#endif
