/* SPDX-License-Identifier: Apache-2.0 */
/* The durable spool (see spool.h for the on-disk format and the recovery
 * rules).
 *
 * Choices made here:
 * - Checksum: CRC32C (Castagnoli), software slicing-by-8, so the format is
 *   the same on every CPU; it costs well under a microsecond per event.
 * - Integers are little-endian on disk. The magic's first byte is 0xF5,
 *   which never occurs in UTF-8 text, so resynchronising after damage
 *   rarely stops on event data (and a candidate must also pass its CRC).
 * - Every append is one writev(2) straight to the segment file (O_APPEND):
 *   when ots_spool_append() returns, the record is in the kernel, so a
 *   kill -9 loses nothing. Only power loss depends on the fsync policy, and
 *   ots_spool_read() syncs before it hands out a record that is not yet on
 *   disk: nothing is sent before it is durable, so a seq the receiver has
 *   seen is never issued again.
 * - A failed append does not consume its seq, so a refused event leaves no
 *   gap.
 * - Only the last segment is scanned in full on open (it is the only one a
 *   crash can tear); the others are checked lazily when read, and the first
 *   record of each is checked for the magic. Reads keep, per segment, a
 *   sparse index of (seq, offset) marks so that a rewind or a restart never
 *   re-reads more than one mark interval. */

#include "core/spool/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <glib/gstdio.h>

#define RECORD_MAGIC 0x4C5053F5u /* bytes F5 'S' 'P' 'L' */
#define HDR_SIZE 28u             /* magic, length, seq, ts, crc */
#define MAX_RECORD (16u * 1024 * 1024)
#define MARK_EVERY (64u * 1024)
#define WINDOW_SIZE (256u * 1024)
#define MAX_LOG_LINES 20 /* per open, for damage found while reading */

#define SEG_PREFIX "seg-"
#define SEG_SUFFIX ".spool"
#define SEG_NAME_LEN (4 + 20 + 6)
#define CURSOR_NAME "cursor"
#define CURSOR_TMP "cursor.tmp"
#define LOCK_NAME "lock"

/* clang-format off */
G_DEFINE_QUARK(ots-spool-error-quark, ots_spool_error)
/* clang-format on */

typedef struct {
    guint64 seq;
    guint64 off;
} Mark;

typedef struct {
    guint64 first_seq;  /* from the file name */
    guint64 limit;      /* its records' seqs are below this: the next segment's first */
    guint64 size;       /* bytes of whole records (the write offset of the active one) */
    guint64 scanned_to; /* damage before this offset has been counted already */
    GArray *marks;      /* Mark, increasing: a valid record with .seq starts at .off */
} Segment;

typedef struct {
    guint32 len;
    guint64 seq;
    gint64 ts;
} RecHdr;

typedef enum {
    REC_VALID,
    REC_SHORT, /* runs past the end of the segment */
    REC_BAD,
} RecCheck;

struct _OtsSpool {
    OtsSpoolConfig cfg;
    char *path;
    int dirfd;
    int lockfd;

    GPtrArray *segs;   /* Segment *, oldest first; the last one takes the appends */
    int wfd;           /* the last segment, O_RDWR | O_APPEND; -1 if none */
    gboolean sealed;   /* the last segment takes no more appends (a rollback failed) */
    guint64 synced_to; /* bytes of the last segment known to be on disk */
    gint64 last_sync;

    guint64 next_seq;
    guint64 acked_seq;
    guint64 disk_bytes;

    /* Read position: records after rseq, from (rseg, roff). */
    Segment *rseg;
    guint64 roff;
    guint64 rseq;
    gboolean rseek; /* recompute (rseg, roff) from rseq before reading */

    /* One cached read window over one segment. */
    Segment *win_seg;
    int win_fd; /* read-only fd of win_seg unless it is the last segment */
    Segment *win_fd_seg;
    guint64 win_base;
    gsize win_len;
    guint8 *win;
    gsize win_cap;

    gboolean failing; /* appends are failing: log once, count the rest */
    gboolean full;    /* dropping for room: log once until an ack frees space */
    guint log_lines;

    OtsSpoolStats st; /* the counters; the rest is filled in by get_stats */
};

/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78), slicing-by-8. */
static guint32 crc_table[8][256];

static void
crc_init(void)
{
    static gsize done = 0;

    if (!g_once_init_enter(&done))
        return;
    for (guint i = 0; i < 256; i++) {
        guint32 c = i;
        for (guint k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (guint i = 0; i < 256; i++)
        for (guint t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
    g_once_init_leave(&done, 1);
}

/**
 * ots_spool_crc32c:
 * @crc: 0 to start, or the result of the previous call to continue
 * @data: (array length=len): bytes
 * @len: number of bytes
 *
 * CRC32C (Castagnoli) as used in the record headers; chains like zlib's
 * crc32(). The check value of "123456789" is 0xE3069283.
 *
 * Returns: the CRC of everything so far
 */
guint32
ots_spool_crc32c(guint32 crc, const void *data, gsize len)
{
    const guint8 *p = data;

    crc_init();
    crc = ~crc;
    while (len >= 8) {
        guint32 lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo = GUINT32_FROM_LE(lo) ^ crc;
        hi = GUINT32_FROM_LE(hi);
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
              crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xff] ^
              crc_table[2][(hi >> 8) & 0xff] ^ crc_table[1][(hi >> 16) & 0xff] ^
              crc_table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len-- > 0)
        crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static guint32
rd32(const guint8 *p)
{
    guint32 v;
    memcpy(&v, p, 4);
    return GUINT32_FROM_LE(v);
}

static guint64
rd64(const guint8 *p)
{
    guint64 v;
    memcpy(&v, p, 8);
    return GUINT64_FROM_LE(v);
}

static void
wr32(guint8 *p, guint32 v)
{
    v = GUINT32_TO_LE(v);
    memcpy(p, &v, 4);
}

static void
wr64(guint8 *p, guint64 v)
{
    v = GUINT64_TO_LE(v);
    memcpy(p, &v, 8);
}

static char *
seg_name(guint64 first_seq)
{
    return g_strdup_printf(SEG_PREFIX "%020" G_GUINT64_FORMAT SEG_SUFFIX, first_seq);
}

/* seg-<20 digits>.spool, seq >= 1: TRUE. A valid name with seq 0 sets *seq = 0. */
static gboolean
parse_seg_name(const char *name, guint64 *seq)
{
    if (strlen(name) != SEG_NAME_LEN || !g_str_has_prefix(name, SEG_PREFIX) ||
        !g_str_has_suffix(name, SEG_SUFFIX))
        return FALSE;
    char digits[21];
    memcpy(digits, name + 4, 20);
    digits[20] = '\0';
    for (guint i = 0; i < 20; i++)
        if (!g_ascii_isdigit(digits[i]))
            return FALSE;
    guint64 v = 0;
    if (!g_ascii_string_to_unsigned(digits, 10, 0, G_MAXUINT64, &v, NULL))
        return FALSE;
    *seq = v;
    return TRUE;
}

static void
segment_free(Segment *seg)
{
    g_array_unref(seg->marks);
    g_free(seg);
}

static Segment *
segment_new(guint64 first_seq, guint64 size)
{
    Segment *seg = g_new0(Segment, 1);
    seg->first_seq = first_seq;
    seg->limit = G_MAXUINT64;
    seg->size = size;
    seg->marks = g_array_new(FALSE, FALSE, sizeof(Mark));
    return seg;
}

static Segment *
last_seg(OtsSpool *s)
{
    return s->segs->len ? g_ptr_array_index(s->segs, s->segs->len - 1) : NULL;
}

/* One past the highest seq segment @i can hold. */
static guint64
seg_end_seq(OtsSpool *s, guint i)
{
    if (i + 1 < s->segs->len)
        return ((Segment *)g_ptr_array_index(s->segs, i + 1))->first_seq;
    return s->next_seq;
}

static void
add_mark(Segment *seg, guint64 seq, guint64 off)
{
    const Mark *last =
        seg->marks->len ? &g_array_index(seg->marks, Mark, seg->marks->len - 1) : NULL;
    guint64 last_off = last ? last->off : 0;
    if (off < last_off + MARK_EVERY || (last && seq <= last->seq))
        return;
    Mark m = {seq, off};
    g_array_append_val(seg->marks, m);
}

/* The offset of the last mark with seq <= @seq (0 when none). */
static guint64
mark_before(Segment *seg, guint64 seq)
{
    guint lo = 0, hi = seg->marks->len;
    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        if (g_array_index(seg->marks, Mark, mid).seq <= seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo ? g_array_index(seg->marks, Mark, lo - 1).off : 0;
}

static void damage_log(OtsSpool *s, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* Damage found while reading is logged a bounded number of times: a badly
 * damaged file must not flood the journal. */
static void
damage_log(OtsSpool *s, const char *fmt, ...)
{
    if (s->log_lines >= MAX_LOG_LINES)
        return;
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    s->log_lines++;
    g_message("%s%s", msg,
              s->log_lines == MAX_LOG_LINES ? " (further damage is only counted)" : "");
}

static void
window_forget(OtsSpool *s)
{
    s->win_seg = NULL;
    s->win_len = 0;
}

static int
seg_fd(OtsSpool *s, Segment *seg)
{
    if (seg == last_seg(s) && s->wfd >= 0)
        return s->wfd;
    if (s->win_fd_seg == seg && s->win_fd >= 0)
        return s->win_fd;
    if (s->win_fd >= 0)
        close(s->win_fd);
    s->win_fd_seg = NULL;
    g_autofree char *name = seg_name(seg->first_seq);
    s->win_fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (s->win_fd < 0) {
        int e = errno;
        damage_log(s, "cannot open %s/%s: %s", s->path, name, g_strerror(e));
        return -1;
    }
    s->win_fd_seg = seg;
    return s->win_fd;
}

/* Forgets everything cached about @seg before it is deleted. */
static void
seg_forget(OtsSpool *s, Segment *seg)
{
    if (s->win_seg == seg)
        window_forget(s);
    if (s->win_fd_seg == seg) {
        close(s->win_fd);
        s->win_fd = -1;
        s->win_fd_seg = NULL;
    }
}

/* @need bytes of @seg at @off, or NULL when they are past its end or cannot
 * be read. Valid until the next call. */
static const guint8 *
window_get(OtsSpool *s, Segment *seg, guint64 off, gsize need)
{
    if (need > seg->size || off > seg->size - need)
        return NULL;
    if (s->win_seg == seg && off >= s->win_base && off + need <= s->win_base + s->win_len)
        return s->win + (off - s->win_base);

    gsize want = MAX(need, WINDOW_SIZE);
    if (want > seg->size - off)
        want = seg->size - off;
    if (want > s->win_cap) {
        g_free(s->win);
        s->win = g_malloc(want);
        s->win_cap = want;
    }
    window_forget(s);
    int fd = seg_fd(s, seg);
    if (fd < 0)
        return NULL;
    gsize got = 0;
    while (got < want) {
        ssize_t n = pread(fd, s->win + got, want - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            damage_log(s,
                       "read error in segment %" G_GUINT64_FORMAT " at %" G_GUINT64_FORMAT ": %s",
                       seg->first_seq, off + got, g_strerror(e));
            break;
        }
        if (n == 0)
            break;
        got += (gsize)n;
    }
    if (got < need)
        return NULL;
    s->win_seg = seg;
    s->win_base = off;
    s->win_len = got;
    return s->win;
}

static RecCheck
check_record(OtsSpool *s, Segment *seg, guint64 off, RecHdr *h, const guint8 **data)
{
    const guint8 *p = window_get(s, seg, off, HDR_SIZE);
    if (p == NULL)
        return REC_SHORT;
    if (rd32(p) != RECORD_MAGIC)
        return REC_BAD;
    guint32 len = rd32(p + 4);
    guint64 seq = rd64(p + 8);
    if (len > MAX_RECORD || seq < seg->first_seq || seq >= seg->limit || seq == 0)
        return REC_BAD;
    p = window_get(s, seg, off, HDR_SIZE + len);
    if (p == NULL)
        return REC_SHORT;
    guint32 crc = ots_spool_crc32c(0, p + 8, 16);
    crc = ots_spool_crc32c(crc, p + HDR_SIZE, len);
    if (crc != rd32(p + 24))
        return REC_BAD;
    h->len = len;
    h->seq = seq;
    h->ts = (gint64)rd64(p + 16);
    if (data)
        *data = p + HDR_SIZE;
    return REC_VALID;
}

/* The offset of the next valid record at or after @from, or the segment's
 * size when there is none. */
static guint64
resync(OtsSpool *s, Segment *seg, guint64 from)
{
    guint64 p = from;

    while (p < seg->size && seg->size - p >= HDR_SIZE) {
        const guint8 *w;
        gsize avail;
        if (s->win_seg == seg && p >= s->win_base && p < s->win_base + s->win_len &&
            (s->win_base + s->win_len - p >= HDR_SIZE || s->win_base + s->win_len == seg->size)) {
            w = s->win + (p - s->win_base);
            avail = s->win_base + s->win_len - p;
        } else {
            avail = (gsize)MIN(seg->size - p, (guint64)WINDOW_SIZE);
            w = window_get(s, seg, p, avail);
            if (w == NULL)
                return seg->size;
        }
        const guint8 *q = memchr(w, RECORD_MAGIC & 0xff, avail);
        if (q == NULL) {
            p += avail;
            continue;
        }
        guint64 cand = p + (guint64)(q - w);
        RecHdr h;
        if (check_record(s, seg, cand, &h, NULL) == REC_VALID)
            return cand;
        p = cand + 1;
    }
    return seg->size;
}

/* The next valid record at or after *@off in @seg; damage skipped on the
 * way is counted once (whoever reaches it first). FALSE at the end. */
static gboolean
next_valid(OtsSpool *s, Segment *seg, guint64 *off, RecHdr *h, const guint8 **data)
{
    if (*off >= seg->size)
        return FALSE;
    if (check_record(s, seg, *off, h, data) != REC_VALID) {
        guint64 bad = *off;
        guint64 next = resync(s, seg, bad + 1);
        if (bad >= seg->scanned_to) {
            s->st.bad_crc++;
            damage_log(s,
                       "segment %" G_GUINT64_FORMAT ": skipped %" G_GUINT64_FORMAT
                       " damaged bytes at offset %" G_GUINT64_FORMAT,
                       seg->first_seq, next - bad, bad);
        }
        seg->scanned_to = MAX(seg->scanned_to, next);
        *off = next;
        if (next >= seg->size || check_record(s, seg, next, h, data) != REC_VALID)
            return FALSE;
    }
    seg->scanned_to = MAX(seg->scanned_to, *off + HDR_SIZE + h->len);
    add_mark(seg, h->seq, *off);
    return TRUE;
}

static gboolean
fsync_dir(OtsSpool *s)
{
    return fsync(s->dirfd) == 0;
}

static void
do_sync(OtsSpool *s)
{
    Segment *seg = last_seg(s);
    s->last_sync = g_get_monotonic_time();
    if (seg == NULL || s->wfd < 0 || s->synced_to >= seg->size)
        return;
    if (fdatasync(s->wfd) != 0) {
        int e = errno;
        s->st.write_errors++;
        damage_log(s, "fdatasync of %s failed: %s", s->path, g_strerror(e));
        return;
    }
    s->synced_to = seg->size;
}

static void
write_cursor(OtsSpool *s, gboolean durable)
{
    char buf[32];
    int n = g_snprintf(buf, sizeof(buf), "%" G_GUINT64_FORMAT "\n", s->acked_seq);
    int e = 0;
    int fd = openat(s->dirfd, CURSOR_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        e = errno;
    } else {
        ssize_t w;
        do
            w = write(fd, buf, (size_t)n);
        while (w < 0 && errno == EINTR);
        if (w != n)
            e = w < 0 ? errno : ENOSPC;
        else if (durable && fdatasync(fd) != 0)
            e = errno;
        close(fd);
    }
    if (e == 0 && renameat(s->dirfd, CURSOR_TMP, s->dirfd, CURSOR_NAME) != 0)
        e = errno;
    if (e == 0 && durable && !fsync_dir(s))
        e = errno;
    if (e != 0) {
        s->st.write_errors++;
        damage_log(s, "cannot write the cursor of %s: %s", s->path, g_strerror(e));
    }
}

/* Deletes the oldest segment (never the last one). */
static void
drop_front(OtsSpool *s, gboolean count)
{
    if (s->segs->len < 2)
        return;
    Segment *seg = g_ptr_array_index(s->segs, 0);
    Segment *next = g_ptr_array_index(s->segs, 1);

    if (count) {
        guint64 from = MAX(seg->first_seq, s->acked_seq + 1);
        if (next->first_seq > from)
            s->st.dropped_oldest += next->first_seq - from;
    }
    if (s->rseg == seg) {
        s->rseg = next;
        s->roff = 0;
    }
    g_autofree char *name = seg_name(seg->first_seq);
    if (unlinkat(s->dirfd, name, 0) != 0 && errno != ENOENT) {
        int e = errno;
        damage_log(s, "cannot delete %s/%s: %s", s->path, name, g_strerror(e));
    }
    seg_forget(s, seg);
    s->disk_bytes -= seg->size;
    g_ptr_array_remove_index(s->segs, 0);
}

/* Deletes the segments whose records are all acknowledged. */
static void
delete_acked(OtsSpool *s)
{
    while (s->segs->len > 1 && seg_end_seq(s, 0) - 1 <= s->acked_seq)
        drop_front(s, FALSE);
}

/* Starts a new last segment named after next_seq. */
static gboolean
rotate(OtsSpool *s, int *err)
{
    g_autofree char *name = seg_name(s->next_seq);
    int fd = openat(s->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        *err = errno;
        if (!s->failing)
            g_message("cannot create spool segment %s/%s: %s", s->path, name, g_strerror(*err));
        return FALSE;
    }
    /* The old segment goes to disk before reads move past it, so only the
     * last segment ever holds unsynced records. */
    do_sync(s);
    (void)fsync_dir(s);
    if (s->wfd >= 0)
        close(s->wfd);
    Segment *old = last_seg(s);
    if (old != NULL)
        old->limit = s->next_seq;
    s->wfd = fd;
    s->sealed = FALSE;
    s->synced_to = 0;
    g_ptr_array_add(s->segs, segment_new(s->next_seq, 0));
    delete_acked(s);
    return TRUE;
}

static gboolean
write_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return FALSE;
        if (w == 0) {
            errno = EIO;
            return FALSE;
        }
        gsize done = (gsize)w;
        while (n > 0 && done >= iov->iov_len) {
            done -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (guint8 *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
    return TRUE;
}

static guint64
refuse(OtsSpool *s, gboolean write_error, int err)
{
    s->st.dropped_newest++;
    if (write_error) {
        s->st.write_errors++;
        if (!s->failing)
            g_message("spool %s: append failed: %s (further failures are only counted)", s->path,
                      g_strerror(err));
        s->failing = TRUE;
    }
    return 0;
}

static gint
cmp_u64(gconstpointer a, gconstpointer b)
{
    guint64 x = *(const guint64 *)a, y = *(const guint64 *)b;
    return x < y ? -1 : x > y;
}

static void
move_aside(OtsSpool *s, const char *name, const char *why)
{
    g_autofree char *dest = g_strconcat(name, ".damaged", NULL);
    s->st.damaged_segments++;
    if (renameat(s->dirfd, name, s->dirfd, dest) == 0) {
        g_message("spool segment %s/%s %s: moved aside as %s", s->path, name, why, dest);
    } else {
        int e = errno;
        g_message("spool segment %s/%s %s, and it cannot be moved aside (%s): ignored", s->path,
                  name, why, g_strerror(e));
    }
}

/* The last segment is the only one a crash can tear: scan it whole, drop a
 * torn tail, and return one past the highest seq it holds or held. */
static guint64
recover_last(OtsSpool *s, Segment *seg)
{
    guint64 off = 0, valid_end = 0, max_seq = 0;
    RecHdr h;

    while (off < seg->size) {
        if (check_record(s, seg, off, &h, NULL) == REC_VALID) {
            add_mark(seg, h.seq, off);
            off += HDR_SIZE + h.len;
            valid_end = off;
            max_seq = MAX(max_seq, h.seq);
            continue;
        }
        guint64 next = resync(s, seg, off + 1);
        if (next >= seg->size)
            break;
        s->st.bad_crc++;
        g_message("spool segment %" G_GUINT64_FORMAT ": skipped %" G_GUINT64_FORMAT
                  " damaged bytes at offset %" G_GUINT64_FORMAT,
                  seg->first_seq, next - off, off);
        off = next;
    }
    seg->scanned_to = valid_end;
    guint64 end = max_seq ? max_seq + 1 : seg->first_seq;
    if (valid_end == seg->size)
        return end;

    /* A torn record whose header survived was given a seq the previous run
     * may have reported: never issue it again. */
    const guint8 *p = window_get(s, seg, valid_end, HDR_SIZE);
    if (p != NULL && rd32(p) == RECORD_MAGIC && rd64(p + 8) == end)
        end++;
    s->st.truncated_tail++;
    g_message("spool segment %" G_GUINT64_FORMAT ": truncated a torn tail of %" G_GUINT64_FORMAT
              " bytes at offset %" G_GUINT64_FORMAT,
              seg->first_seq, seg->size - valid_end, valid_end);
    if (s->wfd < 0 || ftruncate(s->wfd, (off_t)valid_end) != 0) {
        int e = s->wfd < 0 ? EBADF : errno;
        g_message("cannot truncate spool segment %" G_GUINT64_FORMAT ": %s; starting a new one",
                  seg->first_seq, g_strerror(e));
        s->sealed = TRUE;
    }
    seg->size = valid_end;
    window_forget(s);
    return end;
}

/**
 * ots_spool_open:
 * @config: the spool's configuration (copied; @config->path too)
 * @error: return location for an error
 *
 * Creates the directory if needed, locks it, and recovers what a previous
 * run left (see spool.h). Damage found is logged and counted, never fatal.
 *
 * Returns: (transfer full) (nullable): the spool, or %NULL with @error set
 * (%OTS_SPOOL_ERROR_LOCKED when another process holds it,
 * %OTS_SPOOL_ERROR_IO when the directory cannot be used)
 */
OtsSpool *
ots_spool_open(const OtsSpoolConfig *config, GError **error)
{
    g_return_val_if_fail(config != NULL && config->path != NULL, NULL);
    g_return_val_if_fail(error == NULL || *error == NULL, NULL);

    crc_init();
    if (g_mkdir_with_parents(config->path, 0750) != 0) {
        int e = errno;
        g_set_error(error, OTS_SPOOL_ERROR, OTS_SPOOL_ERROR_IO,
                    "cannot create spool directory %s: %s", config->path, g_strerror(e));
        return NULL;
    }
    int dirfd = open(config->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        int e = errno;
        g_set_error(error, OTS_SPOOL_ERROR, OTS_SPOOL_ERROR_IO,
                    "cannot open spool directory %s: %s", config->path, g_strerror(e));
        return NULL;
    }
    int lockfd = openat(dirfd, LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (lockfd < 0) {
        int e = errno;
        close(dirfd);
        g_set_error(error, OTS_SPOOL_ERROR, OTS_SPOOL_ERROR_IO, "cannot open %s/" LOCK_NAME ": %s",
                    config->path, g_strerror(e));
        return NULL;
    }
    if (flock(lockfd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(lockfd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        g_strstrip(pid);
        close(lockfd);
        close(dirfd);
        if (e == EWOULDBLOCK)
            g_set_error(error, OTS_SPOOL_ERROR, OTS_SPOOL_ERROR_LOCKED,
                        "spool directory %s is in use by another process%s%s%s", config->path,
                        pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "");
        else
            g_set_error(error, OTS_SPOOL_ERROR, OTS_SPOOL_ERROR_IO,
                        "cannot lock %s/" LOCK_NAME ": %s", config->path, g_strerror(e));
        return NULL;
    }
    {
        char pid[32];
        int n = g_snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
        if (ftruncate(lockfd, 0) != 0 || pwrite(lockfd, pid, (size_t)n, 0) != n)
            g_debug("cannot record the pid in %s/" LOCK_NAME, config->path);
    }

    OtsSpool *s = g_new0(OtsSpool, 1);
    s->cfg = *config;
    s->path = g_strdup(config->path);
    s->cfg.path = s->path;
    if (s->cfg.max_bytes < HDR_SIZE)
        s->cfg.max_bytes = HDR_SIZE;
    if (s->cfg.segment_bytes == 0 || s->cfg.segment_bytes > s->cfg.max_bytes)
        s->cfg.segment_bytes = s->cfg.max_bytes;
    s->dirfd = dirfd;
    s->lockfd = lockfd;
    s->wfd = -1;
    s->win_fd = -1;
    s->segs = g_ptr_array_new_with_free_func((GDestroyNotify)segment_free);
    s->last_sync = g_get_monotonic_time();

    /* The cursor. */
    (void)unlinkat(dirfd, CURSOR_TMP, 0);
    {
        g_autofree char *cpath = g_build_filename(s->path, CURSOR_NAME, NULL);
        g_autofree char *text = NULL;
        gsize len = 0;
        g_autoptr(GError) err = NULL;
        if (g_file_get_contents(cpath, &text, &len, &err)) {
            guint64 v = 0;
            if (len < 32 && strlen(text) == len &&
                g_ascii_string_to_unsigned(g_strstrip(text), 10, 0, G_MAXUINT64 - 1, &v, NULL)) {
                s->acked_seq = v;
            } else {
                g_message("spool cursor %s is unreadable: ignored (unacknowledged records "
                          "will be sent again)",
                          cpath);
            }
        } else if (!g_error_matches(err, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
            g_message("spool cursor %s: %s (ignored)", cpath, err->message);
        }
    }

    /* The segments, oldest first. */
    g_autoptr(GArray) seqs = g_array_new(FALSE, FALSE, sizeof(guint64));
    g_autoptr(GPtrArray) zero_named = g_ptr_array_new_with_free_func(g_free);
    {
        GDir *dir = g_dir_open(s->path, 0, NULL);
        const char *name;
        while (dir && (name = g_dir_read_name(dir)) != NULL) {
            guint64 seq;
            if (!parse_seg_name(name, &seq))
                continue;
            if (seq == 0)
                g_ptr_array_add(zero_named, g_strdup(name));
            else
                g_array_append_val(seqs, seq);
        }
        if (dir)
            g_dir_close(dir);
    }
    g_array_sort(seqs, cmp_u64);
    for (guint i = 0; i < zero_named->len; i++)
        move_aside(s, g_ptr_array_index(zero_named, i), "has seq 0");

    guint64 next_seq = s->acked_seq + 1;
    guint64 damaged_seq = 0, damaged_end = 0;
    for (guint i = 0; i < seqs->len; i++) {
        guint64 seq = g_array_index(seqs, guint64, i);
        g_autofree char *name = seg_name(seq);
        const char *why = NULL;
        struct stat st;
        guint64 size = 0;
        int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) != 0) {
            why = "cannot be read";
        } else if (!S_ISREG(st.st_mode)) {
            why = "is not a regular file";
        } else if ((size = (guint64)st.st_size) >= 4) {
            guint8 m[4];
            if (pread(fd, m, 4, 0) != 4)
                why = "cannot be read";
            else if (rd32(m) != RECORD_MAGIC)
                why = "does not start with a record";
        }
        if (fd >= 0)
            close(fd);
        if (why != NULL) {
            move_aside(s, name, why);
            /* Its records may have been sent: keep their seqs unused. */
            damaged_seq = seq;
            damaged_end = seq + size / HDR_SIZE;
            continue;
        }
        g_ptr_array_add(s->segs, segment_new(seq, size));
    }

    for (guint i = 0; i + 1 < s->segs->len; i++)
        ((Segment *)g_ptr_array_index(s->segs, i))->limit =
            ((Segment *)g_ptr_array_index(s->segs, i + 1))->first_seq;
    Segment *last = last_seg(s);
    if (damaged_seq != 0 && (last == NULL || last->first_seq < damaged_seq))
        next_seq = MAX(next_seq, damaged_end);
    if (last != NULL) {
        g_autofree char *name = seg_name(last->first_seq);
        s->wfd = openat(dirfd, name, O_RDWR | O_APPEND | O_CLOEXEC);
        if (s->wfd < 0) {
            int e = errno;
            g_message("cannot open spool segment %s/%s for writing: %s; starting a new one",
                      s->path, name, g_strerror(e));
            s->sealed = TRUE;
        }
        guint64 end = recover_last(s, last);
        next_seq = MAX(next_seq, end);
    }
    s->next_seq = next_seq;
    for (guint i = 0; i < s->segs->len; i++)
        s->disk_bytes += ((Segment *)g_ptr_array_index(s->segs, i))->size;
    delete_acked(s);

    s->rseq = s->acked_seq;
    s->rseek = TRUE;
    if (s->segs->len > 0 || s->acked_seq > 0)
        g_info("spool %s: %u segments, next seq %" G_GUINT64_FORMAT
               ", acknowledged %" G_GUINT64_FORMAT,
               s->path, s->segs->len, s->next_seq, s->acked_seq);
    return s;
}

/**
 * ots_spool_close:
 * @s: (transfer full) (nullable): a spool
 *
 * Syncs what was appended, releases the directory lock and frees @s.
 */
void
ots_spool_close(OtsSpool *s)
{
    if (s == NULL)
        return;
    do_sync(s);
    if (s->wfd >= 0)
        close(s->wfd);
    if (s->win_fd >= 0)
        close(s->win_fd);
    g_ptr_array_unref(s->segs);
    g_free(s->win);
    if (s->lockfd >= 0)
        close(s->lockfd); /* releases the flock */
    if (s->dirfd >= 0)
        close(s->dirfd);
    g_free(s->path);
    g_free(s);
}

/**
 * ots_spool_next_seq:
 * @s: a spool
 *
 * Returns: the seq the next successful append gets
 */
guint64
ots_spool_next_seq(OtsSpool *s)
{
    g_return_val_if_fail(s != NULL, 0);
    return s->next_seq;
}

/**
 * ots_spool_append:
 * @s: a spool
 * @ts: the event time (µs since the epoch)
 * @line: (array length=len): the event line, its envelope carrying
 *   ots_spool_next_seq()
 * @len: its length
 *
 * Writes one record with a single writev(2), so a kill -9 right after the
 * return loses nothing; the fsync policy decides when it reaches the disk.
 * To make room, the oldest segments are dropped (policy oldest) or the
 * record is refused (policy newest). A write error refuses the record
 * (with policy oldest, a full disk first drops the oldest segments). A
 * refused record does not consume its seq.
 *
 * Returns: the seq given to the record, or 0 when it was refused (counted)
 */
guint64
ots_spool_append(OtsSpool *s, gint64 ts, const guint8 *line, gsize len)
{
    g_return_val_if_fail(s != NULL, 0);
    g_return_val_if_fail(line != NULL || len == 0, 0);

    guint64 rec = HDR_SIZE + (guint64)len;
    if (len > MAX_RECORD || rec > s->cfg.max_bytes)
        return refuse(s, FALSE, 0);

    Segment *seg = last_seg(s);
    if (seg == NULL || s->sealed || s->wfd < 0 ||
        (seg->size > 0 && seg->size + rec > s->cfg.segment_bytes)) {
        int e = 0;
        if (!rotate(s, &e) && (seg == NULL || s->sealed || s->wfd < 0))
            return refuse(s, TRUE, e);
        seg = last_seg(s);
    }
    while (s->disk_bytes + rec > s->cfg.max_bytes) {
        gboolean newest = s->cfg.drop == OTS_SPOOL_DROP_NEWEST || s->segs->len < 2;
        if (!s->full)
            g_message("spool %s is full (%" G_GUINT64_FORMAT " bytes): %s (counted)", s->path,
                      s->cfg.max_bytes,
                      newest ? "refusing new events" : "dropping the oldest events");
        s->full = TRUE;
        if (newest)
            return refuse(s, FALSE, 0);
        drop_front(s, TRUE);
    }

    guint8 hdr[HDR_SIZE];
    wr32(hdr, RECORD_MAGIC);
    wr32(hdr + 4, (guint32)len);
    wr64(hdr + 8, s->next_seq);
    wr64(hdr + 16, (guint64)ts);
    guint32 crc = ots_spool_crc32c(0, hdr + 8, 16);
    crc = ots_spool_crc32c(crc, line, len);
    wr32(hdr + 24, crc);

    for (;;) {
        struct iovec iov[2] = {{hdr, HDR_SIZE}, {(void *)line, len}};
        if (write_all(s->wfd, iov, len ? 2 : 1))
            break;
        int e = errno;
        /* Take back a partial record so the segment stays whole. */
        if (ftruncate(s->wfd, (off_t)seg->size) != 0)
            s->sealed = TRUE;
        window_forget(s);
        if ((e == ENOSPC || e == EDQUOT) && s->cfg.drop == OTS_SPOOL_DROP_OLDEST &&
            s->segs->len > 1 && !s->sealed) {
            drop_front(s, TRUE);
            continue;
        }
        return refuse(s, TRUE, e);
    }

    guint64 seq = s->next_seq++;
    add_mark(seg, seq, seg->size);
    seg->size += rec;
    s->disk_bytes += rec;
    if (s->failing) {
        g_message("spool %s: appends work again", s->path);
        s->failing = FALSE;
    }
    if (s->cfg.fsync == OTS_SPOOL_FSYNC_ALWAYS ||
        (s->cfg.fsync == OTS_SPOOL_FSYNC_INTERVAL &&
         g_get_monotonic_time() - s->last_sync >= (gint64)s->cfg.fsync_interval_ms * 1000))
        do_sync(s);
    return seq;
}

/**
 * ots_spool_sync:
 * @s: a spool
 *
 * Policy batch: syncs what was appended. Policy interval: syncs if the
 * interval has passed since the last sync (call it after each batch and
 * from a timer so that a quiet sensor's last events reach the disk).
 * Policy always: nothing left to do.
 */
void
ots_spool_sync(OtsSpool *s)
{
    g_return_if_fail(s != NULL);
    if (s->cfg.fsync == OTS_SPOOL_FSYNC_BATCH ||
        (s->cfg.fsync == OTS_SPOOL_FSYNC_INTERVAL &&
         g_get_monotonic_time() - s->last_sync >= (gint64)s->cfg.fsync_interval_ms * 1000))
        do_sync(s);
}

/* Puts the read position on the first record after rseq. */
static void
seek(OtsSpool *s)
{
    s->rseek = FALSE;
    s->rseg = NULL;
    s->roff = 0;
    if (s->segs->len == 0)
        return;
    guint64 want = s->rseq + 1;
    guint i = 0;
    while (i + 1 < s->segs->len &&
           ((Segment *)g_ptr_array_index(s->segs, i + 1))->first_seq <= want)
        i++;
    s->rseg = g_ptr_array_index(s->segs, i);
    s->roff = mark_before(s->rseg, want);
}

/**
 * ots_spool_read:
 * @s: a spool
 * @max_events: at most this many records (0: no limit)
 * @max_bytes: at most this many bytes of lines, but at least one record
 * @batch: (out caller-allocates): receives the records; its @data is reused
 *   if set, allocated otherwise (free with ots_spool_batch_clear())
 *
 * Reads the records after the read position and moves it past them. The
 * records returned are on disk (the spool syncs first if needed). Damaged
 * records are skipped and counted.
 *
 * Returns: %FALSE when nothing is pending (@batch then holds no events)
 */
gboolean
ots_spool_read(OtsSpool *s, guint max_events, gsize max_bytes, OtsSpoolBatch *batch)
{
    g_return_val_if_fail(s != NULL && batch != NULL, FALSE);

    if (batch->data == NULL)
        batch->data = g_byte_array_new();
    g_byte_array_set_size(batch->data, 0);
    batch->first_seq = batch->last_seq = 0;
    batch->n_events = 0;
    if (max_events == 0)
        max_events = G_MAXUINT;
    if (s->rseek || s->rseg == NULL)
        seek(s);

    Segment *last = last_seg(s);
    gboolean need_sync = FALSE;
    while (s->rseg != NULL && batch->n_events < max_events) {
        Segment *seg = s->rseg;
        guint64 off = s->roff;
        RecHdr h;
        const guint8 *data;
        if (!next_valid(s, seg, &off, &h, &data)) {
            s->roff = off;
            guint i = 0;
            if (!g_ptr_array_find(s->segs, seg, &i) || i + 1 >= s->segs->len)
                break;
            s->rseg = g_ptr_array_index(s->segs, i + 1);
            s->roff = 0;
            continue;
        }
        if (h.seq <= s->rseq) { /* acknowledged or already read */
            s->roff = off + HDR_SIZE + h.len;
            continue;
        }
        if (batch->n_events > 0 && batch->data->len + h.len > max_bytes) {
            s->roff = off;
            break;
        }
        g_byte_array_append(batch->data, data, h.len);
        if (batch->n_events++ == 0)
            batch->first_seq = h.seq;
        batch->last_seq = h.seq;
        s->rseq = h.seq;
        s->roff = off + HDR_SIZE + h.len;
        if (seg == last && s->roff > s->synced_to)
            need_sync = TRUE;
    }
    /* Nothing leaves before it is durable: a seq the receiver has seen must
     * survive a power loss, or it would be issued again. */
    if (need_sync)
        do_sync(s);
    return batch->n_events > 0;
}

/**
 * ots_spool_batch_clear:
 * @batch: a batch filled by ots_spool_read()
 *
 * Frees the batch's data and zeroes it.
 */
void
ots_spool_batch_clear(OtsSpoolBatch *batch)
{
    g_return_if_fail(batch != NULL);
    g_clear_pointer(&batch->data, g_byte_array_unref);
    batch->first_seq = batch->last_seq = 0;
    batch->n_events = 0;
}

/**
 * ots_spool_rewind:
 * @s: a spool
 *
 * Moves the read position back to the acknowledged cursor: the next read
 * returns every unacknowledged record again.
 */
void
ots_spool_rewind(OtsSpool *s)
{
    g_return_if_fail(s != NULL);
    s->rseq = s->acked_seq;
    s->rseek = TRUE;
}

/**
 * ots_spool_ack:
 * @s: a spool
 * @seq: the highest seq the receiver acknowledged
 *
 * Persists the cursor (temp file and rename) and deletes the segments
 * whose records are all acknowledged. An @seq at or below the cursor is
 * ignored; one above the last seq issued is clamped to it.
 */
void
ots_spool_ack(OtsSpool *s, guint64 seq)
{
    g_return_if_fail(s != NULL);
    if (seq >= s->next_seq)
        seq = s->next_seq - 1;
    if (seq <= s->acked_seq)
        return;
    s->acked_seq = seq;
    gboolean deletes = s->segs->len > 1 && seg_end_seq(s, 0) - 1 <= seq;
    /* The cursor must be on disk before segments go: it then still tells
     * the next run where the seqs are. */
    write_cursor(s, deletes || s->cfg.fsync == OTS_SPOOL_FSYNC_ALWAYS);
    if (s->rseq < seq) {
        s->rseq = seq;
        s->rseek = TRUE;
    }
    if (deletes)
        s->full = FALSE;
    delete_acked(s);
}

/**
 * ots_spool_get_stats:
 * @s: a spool
 * @stats: (out caller-allocates): receives the depth and counters
 *
 * Fills @stats. Reads one record header (the oldest unacknowledged), so
 * call it for health reports, not per event.
 */
void
ots_spool_get_stats(OtsSpool *s, OtsSpoolStats *stats)
{
    g_return_if_fail(s != NULL && stats != NULL);

    *stats = s->st;
    stats->next_seq = s->next_seq;
    stats->acked_seq = s->acked_seq;
    stats->segments = s->segs->len;
    stats->disk_bytes = s->disk_bytes;
    stats->depth_events = 0;
    stats->depth_bytes = 0;
    stats->oldest_unacked_ts = 0;

    /* Seqs are contiguous within and across segments, so the depth in
     * events follows from the segment names (records lost to damage that
     * has not been read yet are still counted). */
    gboolean found = FALSE;
    for (guint i = 0; i < s->segs->len; i++) {
        Segment *seg = g_ptr_array_index(s->segs, i);
        guint64 end = seg_end_seq(s, i);
        guint64 from = MAX(seg->first_seq, s->acked_seq + 1);
        if (end <= from)
            continue;
        stats->depth_events += end - from;
        gboolean holds_cursor = seg->first_seq <= s->acked_seq;
        if (!holds_cursor)
            stats->depth_bytes += seg->size;
        if (found)
            continue;
        /* The oldest unacknowledged record: its time, and where it starts. */
        guint64 off = holds_cursor ? mark_before(seg, s->acked_seq + 1) : 0;
        RecHdr h;
        while (next_valid(s, seg, &off, &h, NULL)) {
            if (h.seq > s->acked_seq) {
                found = TRUE;
                stats->oldest_unacked_ts = h.ts;
                if (holds_cursor)
                    stats->depth_bytes += seg->size - off;
                break;
            }
            off += HDR_SIZE + h.len;
        }
    }
}
