/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the spool's recovery and read paths: the input,
 * raw and framed into records with valid CRCs (see frame()), is written as
 * a segment file into a fresh spool directory, each twice: once as the
 * last segment (recovered on open: torn tails, bad CRCs) and once followed
 * by a clean segment (checked while reading). Each time the spool
 * is opened, read to the end, acknowledged, appended to, read again and
 * closed. Damage is expected; crashes, leaks and undefined behaviour are
 * not, and neither is a seq issued twice. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "core/spool/spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char *base_dir;

static void
quiet(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer user)
{
}

static void clear_dir(const char *dir);

static void
remove_base_dir(void)
{
    clear_dir(base_dir);
    g_rmdir(base_dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    g_log_set_handler("ots-spool", G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG,
                      quiet, NULL);
    /* tmpfs if there is one: the spool fsyncs, and a disk would make this
     * target run a few inputs a second. */
    const char *tmp = g_file_test("/dev/shm", G_FILE_TEST_IS_DIR) ? "/dev/shm" : g_get_tmp_dir();
    base_dir = g_build_filename(tmp, "ots-fuzz-spool-XXXXXX", NULL);
    if (g_mkdtemp(base_dir) == NULL)
        __builtin_trap();
    atexit(remove_base_dir);
    return 0;
}

static void
clear_dir(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;
    while (d && (name = g_dir_read_name(d)) != NULL) {
        g_autofree char *p = g_build_filename(dir, name, NULL);
        g_unlink(p);
    }
    if (d)
        g_dir_close(d);
}

static void
write_file(const char *dir, const char *name, const uint8_t *data, size_t size)
{
    g_autofree char *p = g_build_filename(dir, name, NULL);
    if (!g_file_set_contents(p, (const char *)data, (gssize)size, NULL))
        __builtin_trap();
}

static void
drain(OtsSpool *s, guint64 *last)
{
    OtsSpoolBatch b = {0};
    while (ots_spool_read(s, 7, 512, &b)) {
        if (b.n_events == 0 || b.first_seq > b.last_seq || b.first_seq <= *last)
            __builtin_trap();
        *last = b.last_seq;
    }
    ots_spool_batch_clear(&b);
}

/* Runs the spool over @data as segment 1; @follow: the first seq of a clean
 * segment after it (0: none). */
static void
run(const uint8_t *data, size_t size, guint64 follow)
{
    clear_dir(base_dir);
    write_file(base_dir, "seg-00000000000000000001.spool", data, size);
    if (follow) {
        /* A clean, empty segment after it: the input is then read, not
         * recovered. */
        g_autofree char *next = g_strdup_printf("seg-%020" G_GUINT64_FORMAT ".spool", follow);
        write_file(base_dir, next, (const uint8_t *)"", 0);
    }

    OtsSpoolConfig c = {
        .path = base_dir,
        .max_bytes = 1 << 20,
        .segment_bytes = 4096,
        .fsync = OTS_SPOOL_FSYNC_BATCH,
        .drop = OTS_SPOOL_DROP_OLDEST,
    };
    GError *error = NULL;
    OtsSpool *s = ots_spool_open(&c, &error);
    if (s == NULL)
        __builtin_trap(); /* damage never stops the spool from opening */

    guint64 last = 0;
    drain(s, &last);
    if (last >= ots_spool_next_seq(s))
        __builtin_trap();
    OtsSpoolStats st;
    ots_spool_get_stats(s, &st);
    ots_spool_ack(s, last);
    ots_spool_rewind(s);
    drain(s, &last);

    static const char line[] = "{\"seq\":0}\n";
    guint64 first_new = ots_spool_next_seq(s);
    if (first_new <= last)
        __builtin_trap();
    for (guint i = 0; i < 3; i++)
        if (ots_spool_append(s, i, (const guint8 *)line, sizeof(line) - 1) != first_new + i)
            __builtin_trap();
    ots_spool_sync(s);
    drain(s, &last);
    if (last != first_new + 2)
        __builtin_trap();
    ots_spool_get_stats(s, &st);
    if (st.depth_events < 3)
        __builtin_trap();
    ots_spool_ack(s, last);
    ots_spool_get_stats(s, &st);
    if (st.depth_events != 0 || st.depth_bytes != 0 || st.segments != 1)
        __builtin_trap();
    ots_spool_close(s);
}

/* Mutating bytes cannot forge CRCs: this builds valid records from the
 * input (a control byte, then up to 63 bytes of data), the control byte's
 * top bits damaging some of them: a flipped byte, a seq gap, a cut. */
static GByteArray *
frame(const uint8_t *data, size_t size, guint64 *next_seq)
{
    GByteArray *out = g_byte_array_new();
    guint64 seq = 1;
    size_t i = 0;
    while (i < size) {
        guint8 ctl = data[i++];
        guint32 len = MIN((guint32)(ctl & 0x3f), (guint32)(size - i));
        guint8 h[28];
        guint32 v32 = GUINT32_TO_LE(0x4C5053F5u);
        memcpy(h, &v32, 4);
        v32 = GUINT32_TO_LE(len);
        memcpy(h + 4, &v32, 4);
        guint64 v64 = GUINT64_TO_LE(seq);
        memcpy(h + 8, &v64, 8);
        memcpy(h + 16, &v64, 8);
        guint32 crc = ots_spool_crc32c(ots_spool_crc32c(0, h + 8, 16), data + i, len);
        v32 = GUINT32_TO_LE(crc);
        memcpy(h + 24, &v32, 4);
        guint start = out->len;
        g_byte_array_append(out, h, sizeof(h));
        g_byte_array_append(out, data + i, len);
        switch (ctl >> 6) {
        case 1:
            out->data[start + (seq * 7) % (28 + len)] ^= 0x10;
            break;
        case 2:
            seq += 2;
            break;
        case 3:
            g_byte_array_set_size(out, start + (28 + len) / 2);
            break;
        default:
            break;
        }
        i += len;
        seq++;
    }
    *next_seq = seq;
    return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    run(data, size, 0);
    run(data, size, size / 28 + 2);
    guint64 next = 0;
    GByteArray *framed = frame(data, size, &next);
    run(framed->data, framed->len, 0);
    run(framed->data, framed->len, next);
    g_byte_array_unref(framed);
    clear_dir(base_dir);
    return 0;
}
