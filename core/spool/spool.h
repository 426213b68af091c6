/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The durable store-and-forward queue between the event pipeline and the
 * uplink. Main thread only.
 *
 * On disk: a directory of append-only segment files (seg-<first seq, 20
 * digits>.spool), each a sequence of records
 *     u32 magic | u32 length | u64 seq | i64 ts | u32 crc32c(seq..data) | data
 * (little-endian; magic 0x4C5053F5, the bytes F5 'S' 'P' 'L'; 28 header bytes)
 * and a cursor file holding the last acknowledged seq (written atomically:
 * temp file + rename). Segments whose records are all acknowledged are
 * deleted. Sequence numbers are assigned here, so they are persistent:
 * after any restart (kill -9 included) they continue above the highest seq
 * found in the segments or the cursor.
 *
 * Recovery on open: a torn tail record (short or bad CRC at the very end of
 * the last segment) is truncated; a record with a bad CRC elsewhere is
 * skipped (resynchronising on the next magic) and counted; a segment that
 * cannot be read at all is renamed to *.damaged with a log line. The spool
 * opens anyway.
 *
 * Bounded: when appending would exceed max_bytes, the oldest segment is
 * dropped (policy "oldest", its unacknowledged records counted as dropped),
 * or the new record is refused and counted (policy "newest"). A write error
 * (disk full, EIO) is handled the same way: counted, never a crash, and what
 * is already queued stays. */

#include <glib.h>

G_BEGIN_DECLS

#define OTS_SPOOL_ERROR (ots_spool_error_quark())
GQuark ots_spool_error_quark(void);

typedef enum {
    OTS_SPOOL_ERROR_IO,
    OTS_SPOOL_ERROR_LOCKED, /* another process holds the spool directory */
} OtsSpoolError;

typedef enum {
    OTS_SPOOL_FSYNC_ALWAYS,   /* fsync after every append (slow, safest) */
    OTS_SPOOL_FSYNC_BATCH,    /* fsync when ots_spool_sync() is called (per batch of events) */
    OTS_SPOOL_FSYNC_INTERVAL, /* fsync at most every fsync_interval_ms */
} OtsSpoolFsync;

typedef enum {
    OTS_SPOOL_DROP_OLDEST,
    OTS_SPOOL_DROP_NEWEST,
} OtsSpoolDropPolicy;

typedef struct {
    const char *path;          /* directory, created if missing (mode 0750) */
    guint64 max_bytes;         /* total on disk */
    guint64 segment_bytes;     /* a new segment starts past this size */
    OtsSpoolFsync fsync;
    guint fsync_interval_ms;
    OtsSpoolDropPolicy drop;
} OtsSpoolConfig;

typedef struct {
    guint64 next_seq;        /* the seq the next append gets */
    guint64 acked_seq;       /* last acknowledged seq (0: none) */
    guint64 depth_events;    /* appended, not yet acknowledged */
    guint64 depth_bytes;
    gint64 oldest_unacked_ts;/* event ts (µs) of the oldest unacknowledged record, 0 if none */
    guint64 dropped_oldest;  /* records dropped unacknowledged to make room */
    guint64 dropped_newest;  /* appends refused (policy newest, or write errors) */
    guint64 write_errors;
    guint64 bad_crc;         /* records skipped at recovery or read */
    guint64 truncated_tail;  /* torn tails truncated at recovery */
    guint64 damaged_segments;
    guint segments;
    guint64 disk_bytes;
} OtsSpoolStats;

typedef struct _OtsSpool OtsSpool;

OtsSpool *ots_spool_open(const OtsSpoolConfig *config, GError **error);
/* Syncs and closes. */
void ots_spool_close(OtsSpool *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(OtsSpool, ots_spool_close)

/* The seq the next append will get. The caller writes it into the event
 * line (the envelope) before appending. */
guint64 ots_spool_next_seq(OtsSpool *s);

/* Appends one event line (NDJSON, with its newline) whose envelope carries
 * seq ots_spool_next_seq(); @ts is the event time. Returns the seq assigned,
 * or 0 when the record was dropped (counted in stats). */
guint64 ots_spool_append(OtsSpool *s, gint64 ts, const guint8 *line, gsize len);

/* Applies the fsync policy "batch" (call after a batch of appends). */
void ots_spool_sync(OtsSpool *s);

/* Reading for the uplink. A read position runs ahead of the acknowledged
 * cursor: ots_spool_read() returns records after the read position and
 * moves it; ots_spool_rewind() moves it back to the cursor (after a failed
 * send, everything unacknowledged is sent again). */
typedef struct {
    guint64 first_seq;
    guint64 last_seq;
    guint n_events;
    GByteArray *data; /* the lines, concatenated (NDJSON) */
} OtsSpoolBatch;

/* Reads up to @max_events / @max_bytes (at least one record if any is
 * pending, even if larger than @max_bytes). FALSE when nothing is pending. */
gboolean ots_spool_read(OtsSpool *s, guint max_events, gsize max_bytes, OtsSpoolBatch *batch);
void ots_spool_batch_clear(OtsSpoolBatch *batch);
void ots_spool_rewind(OtsSpool *s);

/* The receiver acknowledged every record up to @seq: persists the cursor and
 * deletes fully acknowledged segments. */
void ots_spool_ack(OtsSpool *s, guint64 seq);

void ots_spool_get_stats(OtsSpool *s, OtsSpoolStats *stats);

/* CRC32C (Castagnoli) as in the record header; chains like zlib's crc32()
 * (start with 0). For tests and tools that read segments. */
guint32 ots_spool_crc32c(guint32 crc, const void *data, gsize len);

G_END_DECLS
