/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Test harness for dissector plugins: drives a dissector exactly as the
 * capture pipeline does (same per-direction buffering, NEED_MORE handling,
 * gap and flow-end calls, same event serialisation), without packets.
 * Used by the CUnit tests under plugins/dissectors/<proto>/tests/ and by the
 * fuzz harnesses. Not part of the SDK. */

#include <glib.h>
#include <otsensor/dissector.h>
#include "core/flow/flow-table.h"

G_BEGIN_DECLS

typedef struct _OtsHarness OtsHarness;

/* A flow 127.0.0.1:40000 (client) <-> 127.0.0.2:@server_port (server). */
OtsHarness *ots_harness_new(const OtsDissectorInfo *info, OtsL4Proto l4, guint16 server_port);
void ots_harness_free(OtsHarness *h);
/* The harness's flow, to change its addresses, ports or VLAN before the
 * first event (the envelope's text is made then). */
OtsFlow *ots_harness_flow(OtsHarness *h);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(OtsHarness, ots_harness_free)

/* Packet time for what follows (µs since the epoch); default 1700000000 s. */
void ots_harness_set_time(OtsHarness *h, gint64 ts);
/* The memory budget of the harness's thread (flows.memcap_mb; 0: none), and
 * what is charged to it now. */
void ots_harness_set_memcap(OtsHarness *h, gsize bytes);
OtsSession *ots_harness_session(OtsHarness *h);
gsize ots_harness_mem_used(OtsHarness *h);
/* Bytes refused because the budget was spent. */
guint64 ots_harness_memcap_refused(OtsHarness *h);

/* TCP: appends @data to the direction's stream and lets the dissector parse;
 * UDP: one datagram. Returns the last parse result. */
OtsParseResult ots_harness_feed(OtsHarness *h, OtsDirection dir, const guint8 *data, gsize len);
/* Reports lost bytes in @dir (drops that direction's pending bytes first). */
void ots_harness_gap(OtsHarness *h, OtsDirection dir, guint32 len);
/* Lets time pass: sets the time to @now and calls the dissector's tick(). */
void ots_harness_tick(OtsHarness *h, gint64 now);
/* Ends the flow (flow_end), as at FIN or end of capture. */
void ots_harness_end(OtsHarness *h);

/* Events emitted so far, as complete NDJSON lines without the newline. */
guint ots_harness_n_events(OtsHarness *h);
const char *ots_harness_event(OtsHarness *h, guint i);
/* Number of events of @type ("transaction", "asset", "alert"). */
guint ots_harness_count(OtsHarness *h, const char *type);
/* Index of the @nth (0-based) event of @type, or -1. */
gint ots_harness_find(OtsHarness *h, const char *type, guint nth);

/* A field of event @i by dotted path ("modbus.unit_id", "modbus.items.0.address"),
 * as compact JSON text: "1", "\"read\"", "true", "{...}"; NULL when absent.
 * (transfer full) */
gchar *ots_harness_field(OtsHarness *h, guint i, const char *path);

/* Asserting helpers for CUnit tests: compare a field's JSON text. */
gboolean ots_harness_field_is(OtsHarness *h, guint i, const char *path, const char *json);

/* Every emitted line must be valid JSON with the envelope fields; the
 * harness checks this on each commit and counts failures here. */
guint ots_harness_invalid_events(OtsHarness *h);

G_END_DECLS
