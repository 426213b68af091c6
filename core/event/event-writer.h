/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The core side of the event builder. Each capture worker owns one
 * OtsEventWriter; events are serialised into the writer's current batch as
 * records (header + JSON body). The body starts at `"type":` and ends with the
 * closing brace; the main thread prepends `{"ts":..,"sensor_id":..,"seq":..,`
 * when it assigns the sequence number, so workers never touch global state. */

#include <glib.h>
#include <otsensor/event.h>
#include "core/event/json-writer.h"

G_BEGIN_DECLS

typedef enum {
    OTS_EVENT_TRANSACTION = 0,
    OTS_EVENT_ASSET,
    OTS_EVENT_ALERT,
    OTS_EVENT_FLOW,
    OTS_EVENT_SENSOR,
    OTS_EVENT_N_TYPES
} OtsEventType;

const char *ots_event_type_to_string(OtsEventType t);

typedef struct {
    gint64 ts;    /* event time, µs since the epoch */
    guint32 len;  /* body bytes that follow the header */
    guint32 type; /* OtsEventType */
} OtsEventRecord;

/* A batch of serialised events handed from a worker to the main thread. */
typedef struct {
    OtsBuf buf;
    /* One OtsEventIndex per committed event, in order: the main thread
     * reads these few contiguous bytes instead of each record's header,
     * which sat in another processor's cache a kilobyte from the last (a
     * dependent cache miss per event: the main thread's top symbol). */
    OtsBuf index;
    guint n_events;
    gint64 created; /* monotonic µs, for flush latency */
} OtsEventBatch;

typedef struct {
    OtsEventRecord rec;
    gsize body; /* offset of the body in buf */
} OtsEventIndex;

OtsEventBatch *ots_event_batch_new(gsize cap);
void ots_event_batch_free(OtsEventBatch *b);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(OtsEventBatch, ots_event_batch_free)

/* Iterates the records of @b: returns FALSE at the end. Start with *@offset = 0.
 * @rec points into the batch's index, @body into its buffer. */
gboolean ots_event_batch_next(const OtsEventBatch *b, gsize *offset, const OtsEventRecord **rec,
                              const char **body);

#define OTS_EVENT_MAX_DEPTH OTS_EVENT_MAX_DEPTH_

struct _OtsEvent {
    /* First: the part the SDK's inline writers use (<otsensor/event.h>).
     * head.buf is the batch's buffer, head.state the innermost container's
     * OTS_EVENT_OPEN_ / _COMMA_ / _ARRAY_, head.depth and head.arrays the
     * nesting. */
    OtsEventHead_ head;
    struct _OtsEventWriter *writer;
    gsize record_start;
};

typedef void (*OtsBatchReadyFunc)(OtsEventBatch *batch, gpointer user);

/* Gives the writer an empty batch of at least @cap bytes (a recycled one, or
 * a new one). */
typedef OtsEventBatch *(*OtsBatchAllocFunc)(gsize cap, gpointer user);

typedef struct _OtsEventWriter {
    OtsEventBatch *batch;
    OtsBatchAllocFunc alloc; /* NULL: ots_event_batch_new() */
    gpointer alloc_user;
    gsize batch_limit; /* hand the batch over once it holds this many bytes */
    OtsBatchReadyFunc ready;
    gpointer ready_user;
    OtsEvent ev;
    OtsTimeCache time_cache;
    guint64 counts[OTS_EVENT_N_TYPES];
    guint64 anomalies;
    /* "proto.code" -> guint64 count; written only by the owning thread. */
    GHashTable *anomaly_counts;
} OtsEventWriter;

void ots_event_writer_init(OtsEventWriter *w, gsize batch_limit, OtsBatchReadyFunc ready,
                           gpointer user);
void ots_event_writer_clear(OtsEventWriter *w);
/* Batches come from @alloc from now on (a pool that recycles them). */
void ots_event_writer_set_alloc(OtsEventWriter *w, OtsBatchAllocFunc alloc, gpointer user);
/* Empties @b for reuse, keeping its buffer. */
void ots_event_batch_reset(OtsEventBatch *b);
/* Hands over the current batch if it holds any event. */
void ots_event_writer_flush(OtsEventWriter *w);

/* Opens an event of @type at time @ts; writes `"type":"..."`. Any event left
 * open is discarded first. */
OtsEvent *ots_event_writer_begin(OtsEventWriter *w, OtsEventType type, gint64 ts);
/* Appends raw JSON members (already escaped, no leading comma) to the top level. */
void ots_event_add_raw(OtsEvent *e, const char *json, gsize len);
/* Returns the buffer to append a raw value after ots_event_key(). */
OtsBuf *ots_event_key(OtsEvent *e, const char *key);

void ots_event_writer_count_anomaly(OtsEventWriter *w, const char *proto, const char *code);

G_END_DECLS

G_BEGIN_DECLS
/* Writes one NDJSON line (with the newline) for a record: the envelope
 * `{"ts":..,"sensor_id":..,"seq":..,` then the body. @sensor_id_json is the
 * sensor id already quoted and escaped. */
void ots_event_format_line(OtsBuf *out, const OtsEventRecord *rec, const char *body,
                           const char *sensor_id_json, guint64 seq, OtsTimeCache *tc);

/* The most a prefix takes besides the sensor id: `{"ts":` and the quoted
 * time (35), `,"sensor_id":` (13), `,"seq":` and 20 digits (27), `,`. */
#define OTS_EVENT_PREFIX_MAX 80
/* Just the envelope `{"ts":..,"sensor_id":..,"seq":..,`: the body follows.
 * In a batch, the byte after each record's body is a newline, so body and
 * newline can go out from the batch as they are (rec->len + 1 bytes). */
void ots_event_format_prefix(OtsBuf *out, const OtsEventRecord *rec, const char *sensor_id_json,
                             gsize id_len, guint64 seq, OtsTimeCache *tc);
G_END_DECLS
