/*
 * test_raft_input.c - what the Raft core refuses: malformed messages
 * (dropped with PL_E_PROTO) and bad configurations or stored state at
 * raft_new.
 */
#include "tests/check.h"

#include "tests/sim/raft_harness.h"

TEST(test_raft_bad_messages_are_dropped)
{
	raft_entry ok = {.term = 1, .index = 1};
	raft_entry gap = {.term = 1, .index = 5};
	raft_entry future = {.term = 9, .index = 1};
	uint8_t junk[3] = {7, 7, 7};
	raft_entry badconf = {.term = 1,
	    .index = 1,
	    .type = RAFT_ENTRY_CONF,
	    .data = junk,
	    .len = 3};
	raft_entry badtype = {.term = 1, .index = 1, .type = 5};
	static const struct {
		const char *name;
		raft_msg m;
	} cases[] = {
	    {"type 0", {.type = 0, .from = 1, .to = 2, .term = 1}},
	    {"type snap",
	        {.type = RAFT_MSG_SNAP, .from = 1, .to = 2, .term = 1}},
	    {"type huge", {.type = 200, .from = 1, .to = 2, .term = 1}},
	    {"from 0", {.type = RAFT_MSG_HEARTBEAT, .to = 2, .term = 1}},
	    {"from self",
	        {.type = RAFT_MSG_HEARTBEAT, .from = 2, .to = 2, .term = 1}},
	    {"to other",
	        {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 3, .term = 1}},
	    {"term 0", {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2}},
	};
	const struct {
		const char *name;
		const raft_entry *e;
		size_t n;
	} ents[] = {
	    {"entries not after prev", &gap, 1},
	    {"entry term above message term", &future, 1},
	    {"undecodable conf", &badconf, 1},
	    {"unknown entry type", &badtype, 1},
	    {"entries without pointer", NULL, 1},
	    {"too many entries", &ok, RAFT_MSG_ENTRIES_MAX + 1},
	};
	tnet *w = tnet_new(3, 0);
	tnet_start(w);
	raft *r = N(w, 2)->r;
	for (size_t c = 0; c < PL_ARRAY_LEN(cases); c++)
		if (raft_step(r, &cases[c].m) != PL_E_PROTO)
			CHECK_FAIL_("case \"%s\" accepted", cases[c].name);
	for (size_t c = 0; c < PL_ARRAY_LEN(ents); c++) {
		raft_msg m = {.type = RAFT_MSG_APP,
		    .from = 1,
		    .to = 2,
		    .term = 1,
		    .ents = ents[c].e,
		    .n_ents = ents[c].n};
		if (raft_step(r, &m) != PL_E_PROTO)
			CHECK_FAIL_("case \"%s\" accepted", ents[c].name);
	}
	raft_msg hb = {.type = RAFT_MSG_HEARTBEAT,
	    .from = 1,
	    .to = 2,
	    .term = 1,
	    .commit = 50}; /* commit beyond our log */
	CHECK_EQ(raft_step(r, &hb), PL_OK);
	CHECK_EQ(st(w, 2).commit, 0);
	CHECK_EQ(st(w, 2).last_index, 0);
	CHECK_EQ(raft_step(r, NULL), PL_E_PROTO);
	tnet_free(w);
}

TEST(test_raft_new_rejects_bad_config_and_storage)
{
	tnode *t = calloc(1, sizeof *t);
	t->id = 1;
	t->first = 1;
	t->conf.voters[0] = 1;
	t->conf.n_voters = 1;
	raft *r = NULL;
	raft_config c = {.id = 1,
	    .election_ticks = 10,
	    .heartbeat_ticks = 2,
	    .msg_bytes_max = 1024,
	    .storage = &tstorage,
	    .storage_ctx = t};
	raft_config bad = c;
	bad.heartbeat_ticks = 10;
	CHECK_EQ(raft_new(&bad, &r), PL_E_CONFIG);
	bad = c;
	bad.id = 0;
	CHECK_EQ(raft_new(&bad, &r), PL_E_CONFIG);
	t->hs.commit = 3; /* beyond the (empty) log */
	CHECK_EQ(raft_new(&c, &r), PL_E_CORRUPT);
	CHECK(r == NULL);
	t->hs.commit = 0;
	CHECK_EQ(raft_new(&c, &r), PL_OK);
	raft_free(r);
	raft_free(NULL);
	free(t);
}
