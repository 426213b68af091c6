/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for core/spool/spool.c, on real files in a temporary
 * directory: round trip, rewind, ack, persistence (close/reopen and
 * kill -9), recovery from torn tails, bad CRCs and damaged segments, the
 * size bound with both policies, write errors and the directory lock. */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "core/spool/spool.h"

#include <CUnit/CUnit.h>

#define HDR 28  /* record header bytes */
#define REC 100 /* bytes on disk of a record made by line(seq, REC - HDR) */

static GString *log_text;

static void
capture_log(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer user)
{
    g_string_append_printf(log_text, "%s\n", message);
}

static int
suite_init(void)
{
    log_text = g_string_new(NULL);
    g_log_set_handler("ots-spool", G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO, capture_log, NULL);
    return 0;
}

static int
suite_clean(void)
{
    g_string_free(log_text, TRUE);
    return 0;
}

static char *
tmp_dir(void)
{
    char *d = g_dir_make_tmp("ots-spool-XXXXXX", NULL);
    g_assert(d != NULL);
    return d;
}

static void
rm_rf(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;
    while (d && (name = g_dir_read_name(d)) != NULL) {
        g_autofree char *p = g_build_filename(dir, name, NULL);
        g_unlink(p);
    }
    if (d)
        g_dir_close(d);
    g_rmdir(dir);
}

static OtsSpoolConfig
config(const char *dir, guint64 max_bytes, guint64 segment_bytes, OtsSpoolDropPolicy drop)
{
    OtsSpoolConfig c = {
        .path = dir,
        .max_bytes = max_bytes,
        .segment_bytes = segment_bytes,
        .fsync = OTS_SPOOL_FSYNC_BATCH,
        .fsync_interval_ms = 1000,
        .drop = drop,
    };
    return c;
}

static OtsSpool *
open_ok(const OtsSpoolConfig *c)
{
    GError *error = NULL;
    OtsSpool *s = ots_spool_open(c, &error);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_PTR_NULL(error);
    return s;
}

/* An NDJSON line of exactly @len bytes carrying @seq. */
static GString *
line(guint64 seq, gsize len)
{
    GString *l = g_string_new(NULL);
    g_string_printf(l, "{\"seq\":%" G_GUINT64_FORMAT ",\"pad\":\"", seq);
    while (l->len + 3 < len)
        g_string_append_c(l, (char)('a' + (seq + l->len) % 26));
    g_string_append(l, "\"}\n");
    return l;
}

/* Appends one line for the next seq; returns what append returned. */
static guint64
append(OtsSpool *s, gsize len)
{
    guint64 seq = ots_spool_next_seq(s);
    GString *l = line(seq, len);
    guint64 got = ots_spool_append(s, (gint64)seq * 1000, (const guint8 *)l->str, l->len);
    g_string_free(l, TRUE);
    return got;
}

static guint64
append_n(OtsSpool *s, guint n, gsize len)
{
    guint64 last = 0;
    for (guint i = 0; i < n; i++) {
        last = append(s, len);
        CU_ASSERT(last != 0);
    }
    return last;
}

/* Checks a batch line by line: each line is the one appended for its seq,
 * the seqs increase, and they match first/last/n_events. Adds the seqs to
 * @seqs. */
static void
check_batch(const OtsSpoolBatch *b, GArray *seqs)
{
    const char *p = (const char *)b->data->data;
    const char *end = p + b->data->len;
    guint n = 0;
    guint64 prev = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (gsize)(end - p));
        CU_ASSERT_PTR_NOT_NULL_FATAL(nl);
        guint64 seq = 0;
        CU_ASSERT_FATAL(sscanf(p, "{\"seq\":%" G_GUINT64_FORMAT ",", &seq) == 1);
        GString *want = line(seq, (gsize)(nl + 1 - p));
        CU_ASSERT(want->len == (gsize)(nl + 1 - p) && memcmp(want->str, p, want->len) == 0);
        g_string_free(want, TRUE);
        CU_ASSERT(seq > prev);
        if (n == 0)
            CU_ASSERT_EQUAL(seq, b->first_seq);
        prev = seq;
        g_array_append_val(seqs, seq);
        n++;
        p = nl + 1;
    }
    CU_ASSERT_EQUAL(n, b->n_events);
    CU_ASSERT_EQUAL(prev, b->last_seq);
}

/* Reads everything pending; returns the seqs in order. */
static GArray *
read_all(OtsSpool *s, guint max_events, gsize max_bytes)
{
    GArray *seqs = g_array_new(FALSE, FALSE, sizeof(guint64));
    OtsSpoolBatch b = {0};
    while (ots_spool_read(s, max_events, max_bytes, &b)) {
        CU_ASSERT(b.n_events >= 1);
        CU_ASSERT(max_events == 0 || b.n_events <= max_events);
        CU_ASSERT(b.n_events == 1 || b.data->len <= max_bytes);
        check_batch(&b, seqs);
    }
    CU_ASSERT_EQUAL(b.n_events, 0);
    ots_spool_batch_clear(&b);
    return seqs;
}

/* The seqs are exactly first..last. */
static gboolean
is_range(GArray *seqs, guint64 first, guint64 last)
{
    if (seqs->len != last - first + 1)
        return FALSE;
    for (guint i = 0; i < seqs->len; i++)
        if (g_array_index(seqs, guint64, i) != first + i)
            return FALSE;
    return TRUE;
}

static char *
seg_path(const char *dir, guint64 seq)
{
    return g_strdup_printf("%s/seg-%020" G_GUINT64_FORMAT ".spool", dir, seq);
}

static guint
count_files(const char *dir, const char *suffix)
{
    guint n = 0;
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;
    while (d && (name = g_dir_read_name(d)) != NULL)
        if (g_str_has_prefix(name, "seg-") && g_str_has_suffix(name, suffix))
            n++;
    if (d)
        g_dir_close(d);
    return n;
}

static gint64
file_size(const char *path)
{
    struct stat st;
    return g_stat(path, &st) == 0 ? (gint64)st.st_size : -1;
}

static void
poke(const char *path, gint64 off, const void *bytes, gsize n)
{
    int fd = open(path, O_WRONLY);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(pwrite(fd, bytes, n, off) == (ssize_t)n);
    close(fd);
}

static void
flip(const char *path, gint64 off)
{
    guint8 b;
    int fd = open(path, O_RDWR);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(pread(fd, &b, 1, off) == 1);
    b ^= 0x40;
    CU_ASSERT(pwrite(fd, &b, 1, off) == 1);
    close(fd);
}

static void
test_crc32c(void)
{
    CU_ASSERT_EQUAL(ots_spool_crc32c(0, "123456789", 9), 0xE3069283u);
    CU_ASSERT_EQUAL(ots_spool_crc32c(0, "", 0), 0u);
    /* Against a bit-at-a-time reference, at every alignment and length,
     * whole and chained. */
    guint8 buf[300];
    for (guint i = 0; i < sizeof(buf); i++)
        buf[i] = (guint8)(i * 131 + 7);
    for (guint off = 0; off < 9; off++) {
        for (guint len = 0; len + off <= sizeof(buf); len += 7) {
            guint32 c = 0xFFFFFFFFu;
            for (guint i = 0; i < len; i++) {
                c ^= buf[off + i];
                for (guint k = 0; k < 8; k++)
                    c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            }
            c = ~c;
            CU_ASSERT_EQUAL(ots_spool_crc32c(0, buf + off, len), c);
            guint32 chained = ots_spool_crc32c(0, buf + off, len / 3);
            chained = ots_spool_crc32c(chained, buf + off + len / 3, len - len / 3);
            CU_ASSERT_EQUAL(chained, c);
        }
    }
}

static void
test_round_trip(void)
{
    g_autofree char *dir = tmp_dir();
    OtsSpoolConfig c = config(dir, 1 << 20, 2048, OTS_SPOOL_DROP_OLDEST);
    OtsSpool *s = open_ok(&c);

    CU_ASSERT_EQUAL(ots_spool_next_seq(s), 1);
    OtsSpoolBatch b = {0};
    CU_ASSERT_FALSE(ots_spool_read(s, 10, 4096, &b));
    for (guint i = 0; i < 300; i++)
        CU_ASSERT_EQUAL(append(s, 40 + (i * 37) % 160), i + 1);
    ots_spool_sync(s);

    OtsSpoolStats st;
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.next_seq, 301);
    CU_ASSERT_EQUAL(st.depth_events, 300);
    CU_ASSERT(st.segments > 5);
    CU_ASSERT_EQUAL(st.segments, count_files(dir, ".spool"));
    CU_ASSERT_EQUAL(st.depth_bytes, st.disk_bytes);
    CU_ASSERT_EQUAL(st.oldest_unacked_ts, 1000);

    GArray *seqs = read_all(s, 17, 4096);
    CU_ASSERT(is_range(seqs, 1, 300));
    g_array_unref(seqs);

    /* Reading continues at the end of the last segment. */
    CU_ASSERT_EQUAL(append(s, 50), 301);
    CU_ASSERT_TRUE(ots_spool_read(s, 0, 0, &b));
    CU_ASSERT_EQUAL(b.first_seq, 301);
    CU_ASSERT_EQUAL(b.n_events, 1);
    CU_ASSERT_EQUAL(b.data->len, 50);

    /* A byte limit smaller than a record still returns one record. */
    ots_spool_rewind(s);
    CU_ASSERT_TRUE(ots_spool_read(s, 100, 10, &b));
    CU_ASSERT_EQUAL(b.n_events, 1);
    CU_ASSERT_EQUAL(b.first_seq, 1);
    ots_spool_batch_clear(&b);
    CU_ASSERT_PTR_NULL(b.data);
    ots_spool_close(s);
    rm_rf(dir);
}

static void
test_rewind(void)
{
    g_autofree char *dir = tmp_dir();
    OtsSpoolConfig c = config(dir, 1 << 20, 1024, OTS_SPOOL_DROP_OLDEST);
    OtsSpool *s = open_ok(&c);
    append_n(s, 100, REC - HDR);

    OtsSpoolBatch b = {0};
    CU_ASSERT_TRUE(ots_spool_read(s, 30, 1 << 20, &b));
    CU_ASSERT(b.first_seq == 1 && b.last_seq == 30 && b.n_events == 30);
    CU_ASSERT_TRUE(ots_spool_read(s, 30, 1 << 20, &b));
    CU_ASSERT(b.first_seq == 31 && b.last_seq == 60);
    ots_spool_ack(s, 30);
    ots_spool_rewind(s);
    CU_ASSERT_TRUE(ots_spool_read(s, 30, 1 << 20, &b));
    CU_ASSERT(b.first_seq == 31 && b.last_seq == 60);
    ots_spool_ack(s, 45); /* mid-segment */
    ots_spool_rewind(s);
    GArray *seqs = read_all(s, 7, 1 << 20);
    CU_ASSERT(is_range(seqs, 46, 100));
    g_array_unref(seqs);
    ots_spool_batch_clear(&b);
    ots_spool_close(s);
    rm_rf(dir);
}

static void
test_ack_deletes(void)
{
    g_autofree char *dir = tmp_dir();
    OtsSpoolConfig c = config(dir, 1 << 20, 1024, OTS_SPOOL_DROP_OLDEST);
    OtsSpool *s = open_ok(&c);
    append_n(s, 100, REC - HDR); /* 10 records a segment: 10 segments */
    OtsSpoolStats st;
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.segments, 10);
    CU_ASSERT_EQUAL(count_files(dir, ".spool"), 10);
    CU_ASSERT_EQUAL(st.disk_bytes, 100 * REC);

    GArray *seqs = read_all(s, 50, 1 << 20);
    g_array_unref(seqs);
    ots_spool_ack(s, 35);
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.acked_seq, 35);
    CU_ASSERT_EQUAL(st.segments, 7); /* 1-10, 11-20, 21-30 are gone */
    CU_ASSERT_EQUAL(count_files(dir, ".spool"), 7);
    g_autofree char *gone = seg_path(dir, 21);
    g_autofree char *kept = seg_path(dir, 31);
    CU_ASSERT_FALSE(g_file_test(gone, G_FILE_TEST_EXISTS));
    CU_ASSERT_TRUE(g_file_test(kept, G_FILE_TEST_EXISTS));
    CU_ASSERT_EQUAL(st.depth_events, 65);
    CU_ASSERT_EQUAL(st.depth_bytes, 65 * REC);
    CU_ASSERT_EQUAL(st.oldest_unacked_ts, 36 * 1000);
    CU_ASSERT_EQUAL(st.disk_bytes, 70 * REC);

    g_autofree char *cursor = g_build_filename(dir, "cursor", NULL);
    g_autofree char *text = NULL;
    CU_ASSERT_TRUE(g_file_get_contents(cursor, &text, NULL, NULL));
    CU_ASSERT_STRING_EQUAL(text, "35\n");

    ots_spool_ack(s, 100);
    ots_spool_ack(s, 20); /* below the cursor: ignored */
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.acked_seq, 100);
    CU_ASSERT_EQUAL(st.segments, 1); /* the last one stays for appends */
    CU_ASSERT_EQUAL(st.depth_events, 0);
    CU_ASSERT_EQUAL(st.depth_bytes, 0);
    CU_ASSERT_EQUAL(st.oldest_unacked_ts, 0);
    OtsSpoolBatch b = {0};
    CU_ASSERT_FALSE(ots_spool_read(s, 10, 1 << 20, &b));
    ots_spool_batch_clear(&b);
    ots_spool_close(s);
    rm_rf(dir);
}

static void
test_persist(void)
{
    g_autofree char *dir = tmp_dir();
    OtsSpoolConfig c = config(dir, 1 << 20, 1024, OTS_SPOOL_DROP_OLDEST);
    OtsSpool *s = open_ok(&c);
    append_n(s, 50, REC - HDR);
    ots_spool_ack(s, 20);
    ots_spool_close(s);

    s = open_ok(&c);
    OtsSpoolStats st;
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.next_seq, 51);
    CU_ASSERT_EQUAL(st.acked_seq, 20);
    CU_ASSERT_EQUAL(st.depth_events, 30);
    CU_ASSERT_EQUAL(st.truncated_tail + st.bad_crc + st.damaged_segments, 0);
    GArray *seqs = read_all(s, 8, 1 << 20);
    CU_ASSERT(is_range(seqs, 21, 50));
    g_array_unref(seqs);
    CU_ASSERT_EQUAL(append(s, 60), 51);
    ots_spool_ack(s, 51); /* everything acknowledged: the seq lives in the cursor and name */
    ots_spool_close(s);

    s = open_ok(&c);
    CU_ASSERT_EQUAL(ots_spool_next_seq(s), 52);
    ots_spool_close(s);

    /* Only the cursor left (segments removed by hand): seqs still go up. */
    g_autofree char *cmd = g_strdup_printf("rm -f %s/seg-*", dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
    s = open_ok(&c);
    CU_ASSERT_EQUAL(ots_spool_next_seq(s), 52);
    ots_spool_close(s);
    rm_rf(dir);
}

static void
test_kill9(void)
{
    g_autofree char *dir = tmp_dir();
    OtsSpoolConfig c = config(dir, 1 << 22, 8192, OTS_SPOOL_DROP_OLDEST);
    OtsSpool *s = open_ok(&c);
    append_n(s, 10, 80);
    ots_spool_ack(s, 4);
    ots_spool_close(s);

    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        /* Never syncs, never closes: dies with records only in the kernel. */
        OtsSpool *cs = ots_spool_open(&c, NULL);
        if (cs == NULL)
            _exit(2);
        for (guint i = 0; i < 500; i++)
            if (append(cs, 60 + i % 100) != 11 + i)
                _exit(3);
        raise(SIGKILL);
        _exit(4);
    }
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    s = open_ok(&c);
    OtsSpoolStats st;
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.next_seq, 511);
    CU_ASSERT_EQUAL(st.acked_seq, 4);
    CU_ASSERT_EQUAL(st.truncated_tail + st.bad_crc + st.damaged_segments, 0);
    GArray *seqs = read_all(s, 100, 1 << 20);
    CU_ASSERT(is_range(seqs, 5, 510));
    g_array_unref(seqs);
    CU_ASSERT_EQUAL(append(s, 70), 511);
    ots_spool_close(s);
    rm_rf(dir);
}

static void
test_torn_tail(void)
{
    g_autofree char *dir = tmp_dir();
    OtsSpoolConfig c = config(dir, 1 << 20, 1 << 16, OTS_SPOOL_DROP_OLDEST);
    g_autofree char *seg = seg_path(dir, 1);

    /* Cut in the data of record 10: its header (seq 10) survived, so 10 is
     * never issued again. */
    OtsSpool *s = open_ok(&c);
    append_n(s, 10, REC - HDR);
    ots_spool_close(s);
    CU_ASSERT_EQUAL(truncate(seg, 9 * REC + 50), 0);
    g_string_truncate(log_text, 0);
    s = open_ok(&c);
    OtsSpoolStats st;
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.truncated_tail, 1);
    CU_ASSERT_EQUAL(st.bad_crc, 0);
    CU_ASSERT_EQUAL(st.next_seq, 11);
    CU_ASSERT_EQUAL(file_size(seg), 9 * REC);
    CU_ASSERT_PTR_NOT_NULL(strstr(log_text->str, "torn tail"));
    GArray *seqs = read_all(s, 4, 1 << 20);
    CU_ASSERT(is_range(seqs, 1, 9));
    g_array_unref(seqs);
    CU_ASSERT_EQUAL(append(s, REC - HDR), 11);
    ots_spool_close(s);

    /* Cut in the header of record 12: its seq is unknown, 12 is reused. */
    CU_ASSERT_EQUAL(truncate(seg, 10 * REC + 5), 0);
    s = open_ok(&c);
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.truncated_tail, 1);
    CU_ASSERT_EQUAL(st.next_seq, 12);
    CU_ASSERT_EQUAL(file_size(seg), 10 * REC);
    seqs = read_all(s, 0, 1 << 20);
    CU_ASSERT_EQUAL(seqs->len, 10);
    CU_ASSERT_EQUAL(g_array_index(seqs, guint64, 9), 11);
    g_array_unref(seqs);

    /* A complete last record with a bad CRC is a torn tail too. */
    CU_ASSERT_EQUAL(append(s, REC - HDR), 12);
    ots_spool_close(s);
    flip(seg, 10 * REC + 60);
    s = open_ok(&c);
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.truncated_tail, 1);
    CU_ASSERT_EQUAL(st.bad_crc, 0);
    CU_ASSERT_EQUAL(file_size(seg), 10 * REC);
    CU_ASSERT_EQUAL(st.next_seq, 13);
    ots_spool_close(s);
    rm_rf(dir);
}

static void
test_bad_crc(void)
{
    g_autofree char *dir = tmp_dir();
    OtsSpoolConfig c = config(dir, 1 << 20, 1024, OTS_SPOOL_DROP_OLDEST);
    OtsSpool *s = open_ok(&c);
    append_n(s, 30, REC - HDR); /* segments 1, 11, 21 */
    ots_spool_close(s);

    g_autofree char *mid = seg_path(dir, 11);
    g_autofree char *last = seg_path(dir, 21);
    flip(mid, 4 * REC + 50);        /* data of record 15 */
    poke(last, 4 * REC, "JUNK", 4); /* magic of record 25 */
    g_string_truncate(log_text, 0);
    s = open_ok(&c);
    OtsSpoolStats st;
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.bad_crc, 1); /* the last segment is checked on open */
    CU_ASSERT_EQUAL(st.truncated_tail, 0);
    CU_ASSERT_EQUAL(st.next_seq, 31);

    GArray *seqs = read_all(s, 6, 1 << 20);
    CU_ASSERT_EQUAL(seqs->len, 28);
    for (guint i = 0; i < seqs->len; i++) {
        guint64 q = g_array_index(seqs, guint64, i);
        CU_ASSERT(q != 15 && q != 25);
    }
    CU_ASSERT_EQUAL(g_array_index(seqs, guint64, 27), 30);
    g_array_unref(seqs);
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.bad_crc, 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(log_text->str, "damaged bytes"));

    /* Read again: the same damage is not counted twice. */
    ots_spool_rewind(s);
    seqs = read_all(s, 0, 1 << 20);
    CU_ASSERT_EQUAL(seqs->len, 28);
    g_array_unref(seqs);
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.bad_crc, 2);
    CU_ASSERT_EQUAL(append(s, 40), 31);
    ots_spool_close(s);
    rm_rf(dir);
}

static void
test_damaged(void)
{
    g_autofree char *dir = tmp_dir();
    OtsSpoolConfig c = config(dir, 1 << 20, 1024, OTS_SPOOL_DROP_OLDEST);
    OtsSpool *s = open_ok(&c);
    append_n(s, 30, REC - HDR);
    ots_spool_close(s);

    g_autofree char *mid = seg_path(dir, 11);
    g_autofree char *aside = g_strconcat(mid, ".damaged", NULL);
    poke(mid, 0, "garbage garbage!", 16);
    g_string_truncate(log_text, 0);
    s = open_ok(&c);
    OtsSpoolStats st;
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.damaged_segments, 1);
    CU_ASSERT_EQUAL(st.segments, 2);
    CU_ASSERT_EQUAL(st.next_seq, 31);
    CU_ASSERT_FALSE(g_file_test(mid, G_FILE_TEST_EXISTS));
    CU_ASSERT_TRUE(g_file_test(aside, G_FILE_TEST_EXISTS));
    CU_ASSERT_PTR_NOT_NULL(strstr(log_text->str, "moved aside"));
    GArray *seqs = read_all(s, 0, 1 << 20);
    CU_ASSERT_EQUAL(seqs->len, 20);
    CU_ASSERT_EQUAL(g_array_index(seqs, guint64, 9), 10);
    CU_ASSERT_EQUAL(g_array_index(seqs, guint64, 10), 21);
    g_array_unref(seqs);
    ots_spool_close(s);

    /* The last segment damaged: the seqs it may have held (at most one a
     * header's worth of bytes) are not issued again. */
    g_autofree char *last = seg_path(dir, 21);
    poke(last, 0, "garbage garbage!", 16);
    s = open_ok(&c);
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.damaged_segments, 1);
    CU_ASSERT_EQUAL(st.next_seq, 21 + (10 * REC) / HDR);
    seqs = read_all(s, 0, 1 << 20);
    CU_ASSERT(is_range(seqs, 1, 10));
    g_array_unref(seqs);
    guint64 q = append(s, REC - HDR);
    CU_ASSERT_EQUAL(q, 21 + (10 * REC) / HDR);
    seqs = read_all(s, 0, 1 << 20);
    CU_ASSERT(is_range(seqs, q, q));
    g_array_unref(seqs);
    CU_ASSERT_EQUAL(count_files(dir, ".damaged"), 2);
    ots_spool_close(s);
    rm_rf(dir);
}

static void
test_full_oldest(void)
{
    g_autofree char *dir = tmp_dir();
    /* 10 records a segment, 4 segments fit: starting segment k + 1 drops
     * segment k - 3. After 200 appends, 191..200 are in segment 20 and
     * 161..200 are kept. */
    OtsSpoolConfig c = config(dir, 4096, 1024, OTS_SPOOL_DROP_OLDEST);
    OtsSpool *s = open_ok(&c);
    g_string_truncate(log_text, 0);
    for (guint i = 0; i < 200; i++)
        CU_ASSERT_EQUAL(append(s, REC - HDR), i + 1);
    OtsSpoolStats st;
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.dropped_oldest, 160);
    CU_ASSERT_EQUAL(st.dropped_newest, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(log_text->str, "dropping the oldest"));
    CU_ASSERT_EQUAL(st.depth_events, 40);
    CU_ASSERT(st.disk_bytes <= 4096);
    GArray *seqs = read_all(s, 0, 1 << 20);
    CU_ASSERT(is_range(seqs, 161, 200));
    g_array_unref(seqs);
    ots_spool_close(s);
    rm_rf(dir);

    /* Acknowledged records are not counted as dropped. */
    dir = (g_free(dir), tmp_dir());
    c.path = dir;
    s = open_ok(&c);
    append_n(s, 30, REC - HDR);
    ots_spool_ack(s, 15); /* deletes segment 1 */
    append_n(s, 170, REC - HDR);
    ots_spool_get_stats(s, &st);
    seqs = read_all(s, 0, 1 << 20);
    CU_ASSERT(is_range(seqs, 161, 200));
    CU_ASSERT_EQUAL(st.dropped_oldest, 200 - 15 - seqs->len);
    g_array_unref(seqs);
    ots_spool_close(s);
    rm_rf(dir);
}

static void
test_full_newest(void)
{
    g_autofree char *dir = tmp_dir();
    OtsSpoolConfig c = config(dir, 4096, 1024, OTS_SPOOL_DROP_NEWEST);
    OtsSpool *s = open_ok(&c);
    guint refused = 0;
    for (guint i = 0; i < 200; i++) {
        guint64 q = append(s, REC - HDR);
        if (q == 0)
            refused++;
        else
            CU_ASSERT_EQUAL(q, i + 1);
    }
    CU_ASSERT_EQUAL(refused, 160);
    OtsSpoolStats st;
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.dropped_newest, 160);
    CU_ASSERT_EQUAL(st.dropped_oldest, 0);
    CU_ASSERT_EQUAL(st.write_errors, 0);
    CU_ASSERT_EQUAL(st.next_seq, 41);
    GArray *seqs = read_all(s, 0, 1 << 20);
    CU_ASSERT(is_range(seqs, 1, 40));
    g_array_unref(seqs);

    /* Acknowledging makes room again; refused records left no gap. */
    ots_spool_ack(s, 40);
    CU_ASSERT_EQUAL(append(s, REC - HDR), 41);
    /* A record larger than the whole spool is refused. */
    GString *big = line(42, 5000);
    CU_ASSERT_EQUAL(ots_spool_append(s, 0, (const guint8 *)big->str, big->len), 0);
    g_string_free(big, TRUE);
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.dropped_newest, 161);
    ots_spool_close(s);
    rm_rf(dir);
}

static void
test_write_error(void)
{
    g_autofree char *dir = tmp_dir();
    OtsSpoolConfig c = config(dir, 1 << 24, 1 << 20, OTS_SPOOL_DROP_OLDEST);
    OtsSpool *s = open_ok(&c);
    append_n(s, 10, REC - HDR);

    /* Files may not grow past 2050 bytes: record 21 is written in part,
     * then fails with EFBIG (SIGXFSZ ignored). */
    struct rlimit old, lim;
    CU_ASSERT_FATAL(getrlimit(RLIMIT_FSIZE, &old) == 0);
    lim = old;
    lim.rlim_cur = 2050;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    g_string_truncate(log_text, 0);
    CU_ASSERT_FATAL(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    guint ok = 0, failed = 0;
    for (guint i = 0; i < 20; i++) {
        if (append(s, REC - HDR) != 0)
            ok++;
        else
            failed++;
    }
    CU_ASSERT_FATAL(setrlimit(RLIMIT_FSIZE, &old) == 0);
    signal(SIGXFSZ, old_handler);

    CU_ASSERT_EQUAL(ok, 10);
    CU_ASSERT_EQUAL(failed, 10);
    OtsSpoolStats st;
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.write_errors, 10);
    CU_ASSERT_EQUAL(st.dropped_newest, 10);
    CU_ASSERT_EQUAL(st.next_seq, 21);
    g_autofree char *seg = seg_path(dir, 1);
    CU_ASSERT_EQUAL(file_size(seg), 20 * REC); /* the partial record was taken back */
    CU_ASSERT_PTR_NOT_NULL(strstr(log_text->str, "append failed"));

    CU_ASSERT_EQUAL(append(s, REC - HDR), 21);
    CU_ASSERT_PTR_NOT_NULL(strstr(log_text->str, "work again"));
    GArray *seqs = read_all(s, 0, 1 << 20);
    CU_ASSERT(is_range(seqs, 1, 21));
    g_array_unref(seqs);
    ots_spool_close(s);

    s = open_ok(&c);
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.truncated_tail + st.bad_crc + st.damaged_segments, 0);
    CU_ASSERT_EQUAL(st.next_seq, 22);
    ots_spool_close(s);
    rm_rf(dir);
}

static void
test_lock(void)
{
    g_autofree char *dir = tmp_dir();
    OtsSpoolConfig c = config(dir, 1 << 20, 4096, OTS_SPOOL_DROP_OLDEST);
    OtsSpool *s = open_ok(&c);

    GError *error = NULL;
    OtsSpool *t = ots_spool_open(&c, &error);
    CU_ASSERT_PTR_NULL(t);
    CU_ASSERT_TRUE(g_error_matches(error, OTS_SPOOL_ERROR, OTS_SPOOL_ERROR_LOCKED));
    g_autofree char *pid = g_strdup_printf("pid %d", (int)getpid());
    CU_ASSERT_PTR_NOT_NULL(error ? strstr(error->message, pid) : NULL);
    g_clear_error(&error);

    /* Another process is refused too. */
    pid_t child = fork();
    CU_ASSERT_FATAL(child >= 0);
    if (child == 0) {
        GError *e = NULL;
        OtsSpool *cs = ots_spool_open(&c, &e);
        _exit(cs == NULL && g_error_matches(e, OTS_SPOOL_ERROR, OTS_SPOOL_ERROR_LOCKED) ? 0 : 1);
    }
    int status = 1;
    CU_ASSERT_EQUAL(waitpid(child, &status, 0), child);
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    ots_spool_close(s);
    t = open_ok(&c);
    ots_spool_close(t);

    /* A path that cannot be a directory is an I/O error. */
    g_autofree char *file = g_build_filename(dir, "cursor", NULL);
    CU_ASSERT_TRUE(g_file_set_contents(file, "7\n", -1, NULL));
    OtsSpoolConfig bad = config(file, 1 << 20, 4096, OTS_SPOOL_DROP_OLDEST);
    CU_ASSERT_PTR_NULL(ots_spool_open(&bad, &error));
    CU_ASSERT_TRUE(g_error_matches(error, OTS_SPOOL_ERROR, OTS_SPOOL_ERROR_IO));
    g_clear_error(&error);
    rm_rf(dir);
}

static void
test_cursor_garbage(void)
{
    g_autofree char *dir = tmp_dir();
    OtsSpoolConfig c = config(dir, 1 << 20, 1024, OTS_SPOOL_DROP_OLDEST);
    OtsSpool *s = open_ok(&c);
    append_n(s, 25, REC - HDR);
    ots_spool_ack(s, 12);
    ots_spool_close(s);
    g_autofree char *cursor = g_build_filename(dir, "cursor", NULL);
    CU_ASSERT_TRUE(g_file_set_contents(cursor, "12x\n", -1, NULL));
    g_string_truncate(log_text, 0);
    s = open_ok(&c);
    CU_ASSERT_PTR_NOT_NULL(strstr(log_text->str, "unreadable"));
    OtsSpoolStats st;
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.acked_seq, 0);
    CU_ASSERT_EQUAL(st.next_seq, 26);
    GArray *seqs = read_all(s, 0, 1 << 20);
    CU_ASSERT(is_range(seqs, 11, 25)); /* segment 1 was deleted at the ack */
    g_array_unref(seqs);
    ots_spool_close(s);
    rm_rf(dir);
}

/* Rewind and restart land in the middle of a large segment through the
 * in-memory marks. */
static void
test_seek(void)
{
    g_autofree char *dir = tmp_dir();
    OtsSpoolConfig c = config(dir, 1 << 26, 1 << 23, OTS_SPOOL_DROP_OLDEST);
    c.fsync = OTS_SPOOL_FSYNC_INTERVAL;
    c.fsync_interval_ms = 50;
    OtsSpool *s = open_ok(&c);
    append_n(s, 20000, 150);
    ots_spool_sync(s);
    OtsSpoolBatch b = {0};
    for (guint i = 0; i < 4; i++)
        CU_ASSERT_TRUE(ots_spool_read(s, 5000, 1 << 22, &b));
    CU_ASSERT_EQUAL(b.last_seq, 20000);
    ots_spool_ack(s, 12345);
    ots_spool_rewind(s);
    CU_ASSERT_TRUE(ots_spool_read(s, 10, 1 << 20, &b));
    CU_ASSERT_EQUAL(b.first_seq, 12346);
    CU_ASSERT_EQUAL(b.last_seq, 12355);
    ots_spool_ack(s, 15000);
    ots_spool_close(s);

    s = open_ok(&c);
    OtsSpoolStats st;
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.depth_events, 5000);
    CU_ASSERT_EQUAL(st.oldest_unacked_ts, 15001 * 1000);
    CU_ASSERT_EQUAL(st.depth_bytes, 5000 * (150 + HDR));
    CU_ASSERT_TRUE(ots_spool_read(s, 3, 1 << 20, &b));
    CU_ASSERT_EQUAL(b.first_seq, 15001);
    CU_ASSERT_EQUAL(b.last_seq, 15003);
    GArray *seqs = g_array_new(FALSE, FALSE, sizeof(guint64));
    check_batch(&b, seqs);
    g_array_unref(seqs);
    ots_spool_batch_clear(&b);
    ots_spool_close(s);
    rm_rf(dir);
}

static void
test_fsync_always(void)
{
    g_autofree char *dir = tmp_dir();
    OtsSpoolConfig c = config(dir, 1 << 20, 4096, OTS_SPOOL_DROP_OLDEST);
    c.fsync = OTS_SPOOL_FSYNC_ALWAYS;
    OtsSpool *s = open_ok(&c);
    append_n(s, 100, 60);
    ots_spool_ack(s, 50);
    GArray *seqs = read_all(s, 0, 1 << 20);
    CU_ASSERT(is_range(seqs, 51, 100));
    g_array_unref(seqs);
    OtsSpoolStats st;
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.write_errors, 0);
    ots_spool_close(s);
    rm_rf(dir);
}

/* Odd arguments: a segment larger than the spool, an ack past the last
 * seq, and no event limit on a read. */
static void
test_edges(void)
{
    g_autofree char *dir = tmp_dir();
    OtsSpoolConfig c = config(dir, 1000, 1 << 20, OTS_SPOOL_DROP_OLDEST);
    OtsSpool *s = open_ok(&c);
    ots_spool_ack(s, 5); /* nothing issued yet: ignored */
    append_n(s, 30, REC - HDR);
    OtsSpoolStats st;
    ots_spool_get_stats(s, &st);
    CU_ASSERT(st.disk_bytes <= 1000);
    CU_ASSERT_EQUAL(st.depth_events + st.dropped_oldest, 30);
    ots_spool_ack(s, 1000);
    ots_spool_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.acked_seq, 30);
    CU_ASSERT_EQUAL(st.depth_events, 0);
    CU_ASSERT_EQUAL(append(s, 10), 31);
    GArray *seqs = read_all(s, 0, 0);
    CU_ASSERT(is_range(seqs, 31, 31));
    g_array_unref(seqs);
    ots_spool_close(s);
    ots_spool_close(NULL);
    rm_rf(dir);
}

static CU_TestInfo spool_tests[] = {
    {"crc32c", test_crc32c},
    {"append, read across segments", test_round_trip},
    {"rewind re-delivers the unacknowledged", test_rewind},
    {"ack deletes acknowledged segments", test_ack_deletes},
    {"seq and cursor persist across close", test_persist},
    {"nothing appended is lost to kill -9", test_kill9},
    {"torn tail truncated", test_torn_tail},
    {"bad CRC skipped and counted once", test_bad_crc},
    {"damaged segment moved aside", test_damaged},
    {"full, policy oldest", test_full_oldest},
    {"full, policy newest", test_full_newest},
    {"write error (EFBIG)", test_write_error},
    {"directory lock", test_lock},
    {"unreadable cursor", test_cursor_garbage},
    {"seek through marks", test_seek},
    {"fsync always", test_fsync_always},
    {"edge arguments", test_edges},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES                                                                            \
    {                                                                                              \
        "spool", suite_init, suite_clean, NULL, NULL, spool_tests                                  \
    }
#include "cunit-main.h"
