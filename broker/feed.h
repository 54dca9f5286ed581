/*
 * feed.h - every gateway's live-event feed on a group's leader. Events
 * are packed once and queued per gateway as BrokerBatch.events records
 * (proto/splice.h); a gateway long-polls, and its oldest parked poll is
 * answered with everything queued plus the feed's tail (epoch, overflow,
 * group). A feed that outgrows its bounds drops events and says so
 * (overflow): the gateway resynchronises its rooms from history.
 *
 * No sockets or clock: a parked poll is an opaque pointer the owner
 * answers (answer) or gets back (release); times are passed in.
 */
#ifndef PARLEY_BROKER_FEED_H
#define PARLEY_BROKER_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parked polls per gateway (a gateway keeps one or two). */
#define BRK_FEED_POLLS_MAX 4
/* Queued bytes per gateway: past it, events drop (overflow). A feed's
 * buffer starts at BRK_FEED_BYTES_MIN and doubles as events queue, so an
 * idle gateway costs a few KiB, not the bound. */
#define BRK_FEED_BYTES_MAX (8u * 1024 * 1024)
#define BRK_FEED_BYTES_MIN (4u * 1024)
#define BRK_FEED_ID_CHARS_MAX 63
/* The leader's epoch (32 hex) "." the feed's incarnation. */
#define BRK_FEED_EPOCH_CHARS_MAX 47

typedef struct brk_feed_gw {
	char id[BRK_FEED_ID_CHARS_MAX + 1];
	/* The leader's epoch plus this feed's incarnation: a gateway that
	 * was forgotten (idle) and comes back sees a new epoch and re-sends
	 * its watches, exactly as after a broker restart. */
	char epoch[BRK_FEED_EPOCH_CHARS_MAX + 1];
	uint8_t *buf; /* BrokerBatch.events records */
	size_t len, cap;
	uint32_t events;
	bool overflow;
	void *polls[BRK_FEED_POLLS_MAX]; /* oldest first */
	int64_t deadlines_us[BRK_FEED_POLLS_MAX];
	int npolls;
	int64_t last_seen_us;
	uint64_t mark; /* the owner's: e.g. "already fed this event" */
} brk_feed_gw;

/* Answers poll with the feed's bytes: records (n bytes) then the tail
 * (tn bytes). Returns false when the answer could not be sent (the feed
 * is kept for the next poll); either way the poll is the owner's again. */
typedef bool (*brk_feed_answer_fn)(void *ctx, void *poll, const uint8_t *feed,
    size_t n, const uint8_t *tail, size_t tn);
/* Gives back a parked poll that is not answered (its gateway forgotten). */
typedef void (*brk_feed_release_fn)(void *ctx, void *poll);

/* No fixed number of gateways: the table grows with the gateways that
 * poll, and shrinks as idle ones are forgotten (brk_feeds_idle). */
typedef struct brk_feeds {
	brk_feed_gw **gws;
	int n, cap;
	char epoch[33]; /* the leader's instance id */
	uint32_t incarnations;
	uint32_t group;
	uint32_t events_max; /* per gateway, gateway_events_max */
	brk_feed_answer_fn answer;
	brk_feed_release_fn release;
	void *ctx;
	uint64_t dropped; /* events dropped for full feeds */
	uint64_t refused; /* gateways refused: id too long or no memory */
	uint64_t failed;  /* answers that could not be sent */
} brk_feeds;

void brk_feeds_init(brk_feeds *f, const char *epoch, uint32_t group,
    uint32_t events_max, brk_feed_answer_fn answer, brk_feed_release_fn release,
    void *ctx);
/* Forgets every gateway, releasing parked polls. */
void brk_feeds_fini(brk_feeds *f);

/* The gateway's feed; with create, a new one when it has none (NULL and
 * counted in refused when the id is too long or memory runs out). */
brk_feed_gw *brk_feeds_find(brk_feeds *f, const char *id, bool create);
/* Queues one packed event; false (and overflow set, counted in dropped)
 * when the feed is full or cannot grow. */
bool brk_feed_append(
    brk_feeds *f, brk_feed_gw *gw, const uint8_t *ev, size_t n);
/* Parks a poll until deadline_us; the oldest is answered first when
 * BRK_FEED_POLLS_MAX are parked already. */
void brk_feed_park(
    brk_feeds *f, brk_feed_gw *gw, void *poll, int64_t deadline_us);
/* Answers gw's oldest parked poll with everything queued (no-op without
 * one). */
void brk_feed_flush(brk_feeds *f, brk_feed_gw *gw);
/* Answers every gateway's oldest poll that has something to say or has
 * waited to its deadline; a gateway polling counts as seen at now. */
void brk_feeds_tick(brk_feeds *f, int64_t now_us);
/* Index of a gateway with no parked poll, not seen for idle_us; -1 when
 * none. */
int brk_feeds_idle(const brk_feeds *f, int64_t now_us, int64_t idle_us);
/* Forgets the gateway at idx (releasing its polls); the last one moves
 * into its slot. */
void brk_feeds_forget(brk_feeds *f, int idx);

#endif
