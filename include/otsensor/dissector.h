/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/**
 * SECTION:dissector
 * @title: Dissector plugins
 *
 * A dissector understands one OT protocol. The core owns flows, reassembles
 * TCP per direction and calls the dissector with the bytes; the dissector
 * keeps its own per-flow state (allocated in state_new, freed by the core
 * exactly once with state_free) and reports events through the session.
 *
 * All callbacks for one flow run on one capture thread: per-flow state needs
 * no locks. A dissector must not keep global mutable state.
 *
 * TCP: parse() receives a reader over all contiguous bytes buffered for one
 * direction. It consumes whole PDUs by advancing the reader and returns
 * %OTS_PARSE_NEED_MORE when the rest is an incomplete PDU: the core keeps the
 * unconsumed bytes (bounded) and calls again when more arrive. After a gap
 * (lost segments, a capture that starts mid-stream) the core calls gap() and
 * the next parse() may start anywhere inside a PDU: resynchronise.
 *
 * UDP: parse() receives one datagram; whatever is not consumed is dropped.
 */

#include <glib.h>
#include <gmodule.h>
#include <otsensor/plugin.h>
#include <otsensor/reader.h>
#include <otsensor/event.h>

G_BEGIN_DECLS

typedef enum {
    OTS_PARSE_OK = 0,       /* consumed what it could; nothing pending */
    OTS_PARSE_NEED_MORE,    /* stopped at an incomplete PDU: call again with more */
    OTS_PARSE_MALFORMED,    /* bytes at the cursor are not this protocol; the core
                               discards this direction's buffer (the dissector has
                               already raised the anomaly) */
    OTS_PARSE_UNSUPPORTED,  /* valid but not handled; skipped */
} OtsParseResult;

typedef enum {
    OTS_PROBE_NO = 0,
    OTS_PROBE_YES,
    OTS_PROBE_NEED_MORE,
} OtsProbeResult;

typedef enum {
    OTS_L4_TCP = 6,
    OTS_L4_UDP = 17,
} OtsL4Proto;

/* Heuristic: do these first bytes of a flow look like this protocol?
 * @r covers the first payload of direction @dir; @l4 says TCP or UDP. */
typedef OtsProbeResult (*OtsProbeFunc)(OtsReader *r, OtsDirection dir, OtsL4Proto l4);

typedef gpointer (*OtsStateNewFunc)(OtsSession *s);
typedef void (*OtsStateFreeFunc)(gpointer state);
typedef OtsParseResult (*OtsParseFunc)(OtsSession *s, gpointer state, OtsDirection dir,
                                       OtsReader *r);
/* @len bytes were lost in direction @dir (0 when unknown, e.g. mid-stream start). */
typedef void (*OtsGapFunc)(OtsSession *s, gpointer state, OtsDirection dir, guint32 len);
/* The flow ends (FIN/RST, idle timeout, eviction, end of capture): report
 * what is still pending, e.g. unanswered requests. The session is valid. */
typedef void (*OtsFlowEndFunc)(OtsSession *s, gpointer state);
/* Time passes (called at most about once a second per flow with traffic):
 * expire old pending requests. @now is µs since the epoch (packet time). */
typedef void (*OtsTickFunc)(OtsSession *s, gpointer state, gint64 now);

/**
 * OtsDissectorInfo:
 *
 * The descriptor a dissector plugin exports through OTS_DISSECTOR_DEFINE().
 * Fields up to @version are #OtsPluginHeader. Port lists end with 0; the
 * config can replace them.
 */
typedef struct {
    guint32 abi_major;
    guint32 abi_minor;
    guint32 kind; /* OTS_PLUGIN_KIND_DISSECTOR */
    const char *name;
    const char *version;
    const char *description;
    const guint16 *tcp_ports;
    const guint16 *udp_ports;
    OtsProbeFunc probe;
    OtsStateNewFunc state_new;
    OtsStateFreeFunc state_free;
    OtsParseFunc parse;
    OtsGapFunc gap;
    OtsFlowEndFunc flow_end;
    OtsTickFunc tick;
    /* Added fields take these slots, so old plugins see NULL. */
    gpointer reserved[16];
} OtsDissectorInfo;

#define OTS_PLUGIN_DEFINE_(info)                                                          \
    G_MODULE_EXPORT const OtsPluginHeader *ots_plugin_get_info(void);                      \
    G_MODULE_EXPORT const OtsPluginHeader *ots_plugin_get_info(void)                       \
    {                                                                                      \
        return (const OtsPluginHeader *)&(info);                                           \
    }

/* Exports the plugin entry point for @info (an OtsDissectorInfo). */
#define OTS_DISSECTOR_DEFINE(info) OTS_PLUGIN_DEFINE_(info)

/* Session accessors, valid during a callback. */

/* Packet time of the current packet, µs since the epoch. */
gint64 ots_session_get_time(OtsSession *s);
OtsL4Proto ots_session_get_l4(OtsSession *s);
guint16 ots_session_get_server_port(OtsSession *s);
guint16 ots_session_get_client_port(OtsSession *s);
/* The dissector's configured per-flow limits (bytes), for bounding its own
 * buffers (fragments, segmented messages). */
gsize ots_session_get_max_pdu(OtsSession *s);

/* Since ABI 1.2. State a dissector keeps beyond its per-flow struct
 * (requests waiting for their response, reassembly buffers) is charged to a
 * budget that every flow of the thread shares (config flows.memcap_mb), so
 * that many flows cannot add up to unbounded memory. Charge before keeping;
 * FALSE means the budget is spent (counted by the core): do not keep it —
 * report what you have now, or let your oldest state go and try again.
 * Refund what you free; what a flow still holds is refunded when it ends. */
gboolean ots_session_charge(OtsSession *s, gsize bytes);
void ots_session_refund(OtsSession *s, gsize bytes);

G_END_DECLS
