/* SPDX-License-Identifier: Apache-2.0 */
/* The classic pcap reader (core/capture/pcap-file.c) against libpcap: every
 * corpus capture and a set of made-up files (both byte orders, nanosecond
 * timestamps, snaplen cuts, truncated and oversized records) must give the
 * same records, and the same error where libpcap reports one. */
#include "core/capture/pcap-file.h"

#include <CUnit/CUnit.h>
#include <pcap/pcap.h>
#include <string.h>
#include <unistd.h>

/* Reads @path both ways; compares record by record. Returns the records. */
static guint
compare_file(const char *path, gboolean expect_error)
{
    char errbuf[PCAP_ERRBUF_SIZE];
    pcap_t *pc = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_MICRO, errbuf);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pc);
    OtsPcapFile *f = ots_pcap_file_open(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    struct pcap_pkthdr *h;
    const u_char *data;
    int rc;
    OtsPcapRecord r;
    OtsPcapNext mine = OTS_PCAP_END;
    g_autoptr(GError) err = NULL;
    guint n = 0;
    while ((rc = pcap_next_ex(pc, &h, &data)) == 1) {
        mine = ots_pcap_file_next(f, &r, &err);
        CU_ASSERT_EQUAL_FATAL(mine, OTS_PCAP_RECORD);
        /* Seconds are unsigned in the file format; libpcap 1.10 sign-extends
         * them from files in the host's byte order (a time past 2038 comes
         * out before 1970). We keep them unsigned. */
        gint64 ts = (gint64)(guint32)h->ts.tv_sec * G_USEC_PER_SEC + h->ts.tv_usec;
        if (r.ts != ts)
            g_printerr("%s: record %u at %" G_GINT64_FORMAT ", libpcap says %" G_GINT64_FORMAT "\n",
                       path, n, r.ts, ts);
        CU_ASSERT_EQUAL(r.ts, ts);
        CU_ASSERT_EQUAL(r.caplen, h->caplen);
        CU_ASSERT_EQUAL(r.len, h->len);
        CU_ASSERT(memcmp(r.data, data, h->caplen) == 0);
        n++;
    }
    mine = ots_pcap_file_next(f, &r, &err);
    if (rc == PCAP_ERROR) {
        CU_ASSERT_EQUAL(mine, OTS_PCAP_ERROR);
        CU_ASSERT_PTR_NOT_NULL_FATAL(err);
        if (g_strcmp0(err->message, pcap_geterr(pc)) != 0)
            g_printerr("%s: libpcap says \"%s\", we say \"%s\"\n", path, pcap_geterr(pc),
                       err->message);
        CU_ASSERT_STRING_EQUAL(err->message, pcap_geterr(pc));
        /* and the file reads as ended after an error */
        CU_ASSERT_EQUAL(ots_pcap_file_next(f, &r, NULL), OTS_PCAP_END);
    } else {
        CU_ASSERT_EQUAL(rc, PCAP_ERROR_BREAK); /* -2: end of file */
        CU_ASSERT_EQUAL(mine, OTS_PCAP_END);
    }
    CU_ASSERT_EQUAL(rc == PCAP_ERROR, expect_error);
    ots_pcap_file_free(f);
    pcap_close(pc);
    return n;
}

static void
test_corpus(void)
{
    const char *root = g_getenv("OTS_SOURCE_ROOT");
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    g_autofree char *dir_path = g_build_filename(root, "..", "shared", "corpus", NULL);
    g_autoptr(GDir) dir = g_dir_open(dir_path, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    const char *name;
    guint files = 0, pcapng = 0;
    while ((name = g_dir_read_name(dir))) {
        g_autofree char *path = g_build_filename(dir_path, name, NULL);
        if (g_str_has_suffix(name, ".pcapng")) {
            /* not classic: left to libpcap */
            CU_ASSERT_PTR_NULL(ots_pcap_file_open(path));
            pcapng++;
        } else if (g_str_has_suffix(name, ".pcap")) {
            CU_ASSERT(compare_file(path, FALSE) > 0);
            files++;
        }
    }
    CU_ASSERT(files >= 10);
    CU_ASSERT(pcapng >= 1);
}

typedef struct {
    gboolean swapped, nsec;
    guint32 snaplen;
    GByteArray *b;
} Maker;

static void
put32(Maker *m, guint32 v)
{
    if (m->swapped)
        v = GUINT32_SWAP_LE_BE(v);
    g_byte_array_append(m->b, (const guint8 *)&v, 4);
}

static void
put16(Maker *m, guint16 v)
{
    if (m->swapped)
        v = GUINT16_SWAP_LE_BE(v);
    g_byte_array_append(m->b, (const guint8 *)&v, 2);
}

static void
maker_init(Maker *m, gboolean swapped, gboolean nsec, guint32 snaplen)
{
    m->swapped = swapped;
    m->nsec = nsec;
    m->snaplen = snaplen;
    m->b = g_byte_array_new();
    put32(m, nsec ? 0xa1b23c4du : 0xa1b2c3d4u);
    put16(m, 2);
    put16(m, 4);
    put32(m, 0);
    put32(m, 0);
    put32(m, snaplen);
    put32(m, 1); /* Ethernet */
}

static void
record(Maker *m, guint32 sec, guint32 frac, guint32 incl, guint32 orig, guint32 present)
{
    put32(m, sec);
    put32(m, frac);
    put32(m, incl);
    put32(m, orig);
    for (guint32 i = 0; i < present; i++) {
        guint8 c = (guint8)(i * 7 + sec);
        g_byte_array_append(m->b, &c, 1);
    }
}

static guint
compare_made(Maker *m, gboolean expect_error)
{
    g_autofree char *path = NULL;
    int fd = g_file_open_tmp("ots-pcap-XXXXXX.pcap", &path, NULL);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(write(fd, m->b->data, m->b->len) == (gssize)m->b->len);
    close(fd);
    guint n = compare_file(path, expect_error);
    /* the same bytes from memory (the fuzz harness's way) */
    OtsPcapFile f;
    CU_ASSERT_FATAL(ots_pcap_file_init(&f, m->b->data, m->b->len));
    OtsPcapRecord r;
    guint k = 0;
    OtsPcapNext rc;
    while ((rc = ots_pcap_file_next(&f, &r, NULL)) == OTS_PCAP_RECORD)
        k++;
    CU_ASSERT_EQUAL(k, n);
    CU_ASSERT_EQUAL(rc, expect_error ? OTS_PCAP_ERROR : OTS_PCAP_END);
    unlink(path);
    g_byte_array_unref(m->b);
    return n;
}

static void
test_made_files(void)
{
    for (int swapped = 0; swapped < 2; swapped++) {
        for (int nsec = 0; nsec < 2; nsec++) {
            Maker m;
            maker_init(&m, swapped, nsec, 65535);
            record(&m, 1700000000, nsec ? 123456789 : 123456, 60, 60, 60);
            record(&m, 1700000001, 999, 0, 0, 0);         /* empty */
            record(&m, 1700000002, 5, 100, 1500, 100);    /* cut on the wire */
            record(&m, 4000000000u, 0, 54, 54, 54);       /* past 2038 */
            CU_ASSERT_EQUAL(compare_made(&m, FALSE), 4);
        }
    }
    /* records longer than the file's snaplen are cut to it */
    Maker m;
    maker_init(&m, FALSE, FALSE, 64);
    record(&m, 1, 0, 200, 200, 200);
    record(&m, 2, 0, 64, 64, 64);
    CU_ASSERT_EQUAL(compare_made(&m, FALSE), 2);
    /* snaplen 0 means the largest */
    maker_init(&m, FALSE, FALSE, 0);
    record(&m, 1, 0, 70000, 70000, 70000);
    CU_ASSERT_EQUAL(compare_made(&m, FALSE), 1);
    /* a records bigger than any snaplen libpcap takes */
    maker_init(&m, FALSE, FALSE, 65535);
    record(&m, 1, 0, 60, 60, 60);
    record(&m, 2, 0, OTS_PCAP_MAX_SNAPLEN + 1, 300000, 16);
    CU_ASSERT_EQUAL(compare_made(&m, TRUE), 1);
    /* the last record cut short, in its data and in its header */
    maker_init(&m, FALSE, FALSE, 65535);
    record(&m, 1, 0, 60, 60, 60);
    record(&m, 2, 0, 60, 60, 20);
    CU_ASSERT_EQUAL(compare_made(&m, TRUE), 1);
    maker_init(&m, FALSE, FALSE, 65535);
    record(&m, 1, 0, 60, 60, 60);
    g_byte_array_append(m.b, (const guint8 *)"\x01\x02\x03\x04\x05", 5);
    CU_ASSERT_EQUAL(compare_made(&m, TRUE), 1);
    /* cut short beyond the snaplen: libpcap names the snaplen-cut sizes */
    maker_init(&m, FALSE, FALSE, 64);
    record(&m, 1, 0, 200, 200, 100);
    CU_ASSERT_EQUAL(compare_made(&m, TRUE), 0);
    /* only the header */
    maker_init(&m, TRUE, FALSE, 65535);
    CU_ASSERT_EQUAL(compare_made(&m, FALSE), 0);
}

static void
test_large_file_crosses_buffers(void)
{
    /* More than the 1 MiB read buffer, with records straddling its end. */
    Maker m;
    maker_init(&m, FALSE, FALSE, 262144);
    guint n = 0;
    for (guint32 len = 1; m.b->len < 5 * 1024 * 1024; len = (len * 37 + 11) % 9000, n++)
        record(&m, 1700000000 + n, n, len, len, len);
    record(&m, 1, 0, 262144, 262144, 262144); /* the largest */
    n++;
    CU_ASSERT_EQUAL(compare_made(&m, FALSE), n);
}

static void
test_not_classic(void)
{
    OtsPcapFile f;
    static const guint8 pcapng[24] = {0x0a, 0x0d, 0x0d, 0x0a};
    CU_ASSERT_FALSE(ots_pcap_file_init(&f, pcapng, sizeof(pcapng)));
    static const guint8 short_header[10] = {0xd4, 0xc3, 0xb2, 0xa1};
    CU_ASSERT_FALSE(ots_pcap_file_init(&f, short_header, sizeof(short_header)));
    /* version 2.3 has quirks libpcap handles: not ours */
    static const guint8 v23[24] = {0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 3, 0};
    CU_ASSERT_FALSE(ots_pcap_file_init(&f, v23, sizeof(v23)));
    CU_ASSERT_PTR_NULL(ots_pcap_file_open("-"));
    CU_ASSERT_PTR_NULL(ots_pcap_file_open("/nonexistent/file.pcap"));
}

static CU_TestInfo capture_tests[] = {
    {"corpus captures read as libpcap reads them", test_corpus},
    {"made-up files: byte orders, ns, snaplen, errors", test_made_files},
    {"a file larger than the read buffer", test_large_file_crosses_buffers},
    {"pcapng and others are left to libpcap", test_not_classic},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES {"capture", NULL, NULL, NULL, NULL, capture_tests}
#include "cunit-main.h"
