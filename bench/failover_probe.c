/*
 * failover_probe.c - the client side of the failover benchmark
 * (bench/failover.sh): one connection publishing one message at a time
 * with a client_msg_id, printing a line per outcome:
 *
 *   ack <sent_ms> <acked_ms> <seq>     (wall clock, milliseconds)
 *   err <sent_ms> <failed_ms> <code>
 *
 * A failover shows as one publish whose ack took the whole pause; any
 * err line is a failover the client saw as an error, which must not
 * happen. Runs until --seconds pass.
 *
 *   parley-failover-probe --url U --token T --seconds S [--room R]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/parley.h"

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
	const char *url = getenv("PARLEY_URL"), *token = getenv("PARLEY_TOKEN");
	const char *room_arg = NULL;
	int seconds = 60;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--url") == 0)
			url = argv[i + 1];
		else if (strcmp(argv[i], "--token") == 0)
			token = argv[i + 1];
		else if (strcmp(argv[i], "--seconds") == 0)
			seconds = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--room") == 0)
			room_arg = argv[i + 1];
	}
	if (url == NULL || token == NULL || seconds <= 0) {
		fprintf(stderr, "usage: parley-failover-probe --url U --token "
		                "T --seconds S [--room R]\n");
		return 2;
	}
	parley_conn *c;
	char room[32];
	if (parley_connect(url, 5000, NULL, &c) != PL_OK ||
	    parley_hello(c, token, 5000, NULL) != PL_OK) {
		fprintf(stderr, "probe: cannot connect to %s\n", url);
		return 1;
	}
	if (room_arg != NULL)
		snprintf(room, sizeof(room), "%s", room_arg);
	else if (parley_create_room(c, NULL, NULL, 0, 10000, room, NULL) !=
	         PL_OK) {
		fprintf(stderr, "probe: cannot create a room\n");
		return 1;
	}
	printf("room %s\n", room);
	fflush(stdout);
	int64_t end = now_ms() + (int64_t)seconds * 1000;
	for (uint64_t n = 1; now_ms() < end; n++) {
		char id[32];
		parley_ack a;
		snprintf(id, sizeof(id), "probe-%llu", (unsigned long long)n);
		int64_t t0 = now_ms();
		/* Longer than any failover: the gateway retries within its
		 * own bound and answers unavailable after it. */
		pl_status st = parley_publish(
		    c, room, id, PARLEY__KIND__TEXT, id, strlen(id), 30000, &a);
		int64_t t1 = now_ms();
		if (st == PL_OK) {
			printf("ack %lld %lld %llu\n", (long long)t0,
			    (long long)t1, (unsigned long long)a.seq);
		} else {
			int code = 0;
			parley_last_error(c, &code);
			printf("err %lld %lld %d\n", (long long)t0,
			    (long long)t1, code);
			if (st == PL_E_CLOSED || st == PL_E_IO)
				break;
		}
		fflush(stdout);
	}
	parley_close(c);
	return 0;
}
