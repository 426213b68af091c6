/* SPDX-License-Identifier: Apache-2.0 */

/* DNP3 dissector tests: link frames built here (with their CRCs) fed
 * through the dissector harness exactly as the pipeline feeds reassembled
 * TCP or UDP datagrams, events checked field by field. */

#include <stdio.h>
#include <CUnit/CUnit.h>
#include <otsensor/dissector.h>
#include "core/dissect/harness.h"
#include "dissector-test.h"

const OtsPluginHeader *ots_plugin_get_info(void);

#define REQ OTS_DIR_TO_SERVER
#define RSP OTS_DIR_TO_CLIENT
#define T0 ((gint64)1700000000 * G_USEC_PER_SEC)
#define MASTER 1
#define OUTSTATION 10

/* Application bytes literal and length. */
#define APP(...) (const guint8[]){__VA_ARGS__}, sizeof((const guint8[]){__VA_ARGS__})

static const OtsDissectorInfo *
dnp3(void)
{
    return (const OtsDissectorInfo *)ots_plugin_get_info();
}

static OtsHarness *
harness(void)
{
    OtsHarness *h = ots_harness_new(dnp3(), OTS_L4_TCP, 20000);
    ots_harness_set_time(h, T0);
    return h;
}

/* The DNP3 link CRC, written independently of the plugin's. */
static guint16
crc16(const guint8 *p, gsize n)
{
    guint16 crc = 0;
    for (gsize i = 0; i < n; i++)
        for (int b = 0; b < 8; b++) {
            gboolean x = ((crc ^ (p[i] >> b)) & 1) != 0;
            crc >>= 1;
            if (x)
                crc ^= 0xa6bc;
        }
    return (guint16)~crc;
}

static void
put_crc(guint8 *p, gsize n)
{
    guint16 c = crc16(p, n);
    p[n] = c & 0xff;
    p[n + 1] = c >> 8;
}

/* One link frame with @n (<= 250) bytes of user data; returns its length. */
static gsize
link_frame(guint8 *out, guint8 ctl, guint16 dst, guint16 src, const guint8 *user, gsize n)
{
    g_assert(n <= 250);
    out[0] = 0x05;
    out[1] = 0x64;
    out[2] = (guint8)(n + 5);
    out[3] = ctl;
    out[4] = dst & 0xff;
    out[5] = dst >> 8;
    out[6] = src & 0xff;
    out[7] = src >> 8;
    put_crc(out, 8);
    gsize o = 10;
    for (gsize i = 0; i < n; i += 16) {
        gsize blk = MIN((gsize)16, n - i);
        memcpy(out + o, user + i, blk);
        put_crc(out + o, blk);
        o += blk + 2;
    }
    return o;
}

/* Link frames carrying application fragment @app from @src to @dst, split
 * into transport segments of at most @seg bytes, appended to @out. */
static void
fragment_frames(GByteArray *out, OtsDirection dir, guint16 src, guint16 dst, const guint8 *app,
                gsize n, gsize seg, guint8 *tseq)
{
    guint8 ctl = dir == REQ ? 0xc4 : 0x44;
    gsize off = 0;
    do {
        gsize take = MIN(seg, n - off);
        guint8 user[250], frame[300];
        user[0] = (guint8)((*tseq & 0x3f) | (off == 0 ? 0x40 : 0) | (off + take == n ? 0x80 : 0));
        memcpy(user + 1, app + off, take);
        *tseq = (*tseq + 1) & 0x3f;
        g_byte_array_append(out, frame, (guint)link_frame(frame, ctl, dst, src, user, take + 1));
        off += take;
    } while (off < n);
}

static OtsParseResult
send_app(OtsHarness *h, OtsDirection dir, const guint8 *app, gsize n)
{
    g_autoptr(GByteArray) b = g_byte_array_new();
    guint8 tseq = 0;
    guint16 src = dir == REQ ? MASTER : OUTSTATION, dst = dir == REQ ? OUTSTATION : MASTER;
    fragment_frames(b, dir, src, dst, app, n, 249, &tseq);
    return ots_harness_feed(h, dir, b->data, b->len);
}

static gint
tx(OtsHarness *h, guint nth)
{
    return ots_harness_find(h, "transaction", nth);
}

/* Class 0123 poll, as in the corpus capture. */
#define READ_CLASS_0123(seq)                                                                       \
    APP(0xc0 | (seq), 0x01, 0x3c, 0x02, 0x06, 0x3c, 0x03, 0x06, 0x3c, 0x04, 0x06, 0x3c, 0x01, 0x06)

/* Response: g1v2 points 0..1 (flags), g30v2 point 3 (flags + int16). */
#define READ_RESPONSE(seq)                                                                         \
    APP(0xc0 | (seq), 0x81, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x01, 0x81, 0x01, 0x1e, 0x02,      \
        0x00, 0x03, 0x03, 0x01, 0x34, 0x12)

/* ---- descriptor and probe ---------------------------------------------- */

static void
test_descriptor(void)
{
    const OtsDissectorInfo *info = dnp3();
    CU_ASSERT_STRING_EQUAL(info->name, "dnp3");
    CU_ASSERT_EQUAL(info->kind, OTS_PLUGIN_KIND_DISSECTOR);
    CU_ASSERT_EQUAL(info->tcp_ports[0], 20000);
    CU_ASSERT_EQUAL(info->udp_ports[0], 20000);
    CU_ASSERT_PTR_NOT_NULL(info->probe);
    CU_ASSERT_PTR_NOT_NULL(info->gap);
    CU_ASSERT_PTR_NOT_NULL(info->flow_end);
    CU_ASSERT_PTR_NOT_NULL(info->tick);
}

static void
test_probe(void)
{
    guint8 f[300];
    gsize n = link_frame(f, 0xc9, OUTSTATION, MASTER, NULL, 0); /* request link status */
    OtsReader r = OTS_READER_INIT(f, n);
    CU_ASSERT_EQUAL(dnp3()->probe(&r, REQ, OTS_L4_TCP), OTS_PROBE_YES);
    OtsReader shortr = OTS_READER_INIT(f, 5);
    CU_ASSERT_EQUAL(dnp3()->probe(&shortr, REQ, OTS_L4_TCP), OTS_PROBE_NEED_MORE);
    f[8] ^= 0xff; /* header CRC */
    OtsReader bad = OTS_READER_INIT(f, n);
    CU_ASSERT_EQUAL(dnp3()->probe(&bad, REQ, OTS_L4_TCP), OTS_PROBE_NO);
    const guint8 http[] = "GET / HTTP/1.1\r\n";
    OtsReader other = OTS_READER_INIT(http, sizeof(http) - 1);
    CU_ASSERT_EQUAL(dnp3()->probe(&other, REQ, OTS_L4_TCP), OTS_PROBE_NO);
}

/* ---- application layer ------------------------------------------------- */

static void
test_read_class_data(void)
{
    g_autoptr(OtsHarness) h = harness();
    CU_ASSERT_EQUAL(send_app(h, REQ, READ_CLASS_0123(3)), OTS_PARSE_OK);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    ots_harness_set_time(h, T0 + 2500);
    CU_ASSERT_EQUAL(send_app(h, RSP, READ_RESPONSE(3)), OTS_PARSE_OK);
    gint i = tx(h, 0);
    FIELD(h, i, "proto", "\"dnp3\"");
    FIELD(h, i, "function", "1");
    FIELD(h, i, "function_name", "\"read\"");
    FIELD(h, i, "op_class", "\"read\"");
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "latency_us", "2500");
    FIELD(h, i, "dnp3.master", "1");
    FIELD(h, i, "dnp3.outstation", "10");
    FIELD(h, i, "dnp3.request.transport_seq", "0");
    FIELD(h, i, "dnp3.request.src", "1");
    FIELD(h, i, "dnp3.request.dst", "10");
    FIELD(h, i, "dnp3.request.fir", "true");
    FIELD(h, i, "dnp3.request.fin", "true");
    FIELD(h, i, "dnp3.request.con", "false");
    FIELD(h, i, "dnp3.request.seq", "3");
    FIELD(h, i, "dnp3.request.function", "1");
    FIELD(h, i, "dnp3.request.object_count", "4");
    FIELD(h, i, "dnp3.request.objects.0.group", "60");
    FIELD(h, i, "dnp3.request.objects.0.variation", "2");
    FIELD(h, i, "dnp3.request.objects.0.qualifier", "6");
    FIELD(h, i, "dnp3.request.objects.0.range_code", "6");
    FIELD(h, i, "dnp3.request.objects.3.variation", "1");
    ABSENT(h, i, "dnp3.request.iin");
    FIELD(h, i, "dnp3.response.src", "10");
    FIELD(h, i, "dnp3.response.dst", "1");
    FIELD(h, i, "dnp3.response.function", "129");
    FIELD(h, i, "dnp3.response.iin", "0");
    FIELD(h, i, "dnp3.response.iin_flags", "[]");
    FIELD(h, i, "dnp3.response.object_count", "2");
    FIELD(h, i, "dnp3.response.objects.0.group", "1");
    FIELD(h, i, "dnp3.response.objects.0.qualifier", "0");
    FIELD(h, i, "dnp3.response.objects.0.start", "0");
    FIELD(h, i, "dnp3.response.objects.0.stop", "1");
    FIELD(h, i, "dnp3.response.objects.1.group", "30");
    FIELD(h, i, "dnp3.response.objects.1.qualifier", "0");
    FIELD(h, i, "dnp3.response.objects.1.start", "3");
    FIELD(h, i, "dnp3.response.objects.1.stop", "3");
    FIELD(h, i, "dnp3.response.objects_truncated", "false");
    ABSENT(h, i, "dnp3.continuation");
    check_clean(h);
}

static void
test_crob_details(void)
{
    g_autoptr(OtsHarness) h = harness();
    const guint8 crob[] = {0x0c, 0x01, 0x28, 0x01, 0x00, 0x05, 0x00, 0x43, 0x01,
                           0xe8, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    guint8 req[64], rsp[64];
    req[0] = 0xc1;
    req[1] = 0x03; /* select */
    memcpy(req + 2, crob, sizeof(crob));
    rsp[0] = 0xc1;
    rsp[1] = 0x81;
    rsp[2] = rsp[3] = 0;
    memcpy(rsp + 4, crob, sizeof(crob));
    send_app(h, REQ, req, 2 + sizeof(crob));
    send_app(h, RSP, rsp, 4 + sizeof(crob));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "3");
    FIELD(h, i, "function_name", "\"select\"");
    FIELD(h, i, "op_class", "\"control\"");
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "dnp3.request.objects.0.group", "12");
    FIELD(h, i, "dnp3.request.objects.0.qualifier", "40");
    FIELD(h, i, "dnp3.request.objects.0.prefix_code", "2");
    FIELD(h, i, "dnp3.request.objects.0.range_code", "8");
    FIELD(h, i, "dnp3.request.objects.0.count", "1");
    FIELD(h, i, "dnp3.request.objects.0.points.0.index", "5");
    FIELD(h, i, "dnp3.request.objects.0.points.0.control_code", "67");
    FIELD(h, i, "dnp3.request.objects.0.points.0.op_type", "\"latch_on\"");
    FIELD(h, i, "dnp3.request.objects.0.points.0.trip_close", "\"close\"");
    FIELD(h, i, "dnp3.request.objects.0.points.0.count", "1");
    FIELD(h, i, "dnp3.request.objects.0.points.0.on_time_ms", "1000");
    FIELD(h, i, "dnp3.request.objects.0.points.0.off_time_ms", "0");
    FIELD(h, i, "dnp3.request.objects.0.points.0.status_name", "\"success\"");
    FIELD(h, i, "dnp3.request.objects.0.points_truncated", "false");
    FIELD(h, i, "dnp3.response.objects.0.points.0.status", "0");

    /* Operate, answered with status 4 (not supported): an exception. */
    req[0] = 0xc2;
    req[1] = 0x04;
    rsp[0] = 0xc2;
    rsp[4 + sizeof(crob) - 1] = 4;
    send_app(h, REQ, req, 2 + sizeof(crob));
    send_app(h, RSP, rsp, 4 + sizeof(crob));
    i = tx(h, 1);
    FIELD(h, i, "function_name", "\"operate\"");
    FIELD(h, i, "status", "\"exception\"");
    FIELD(h, i, "dnp3.response.objects.0.points.0.status_name", "\"not_supported\"");

    /* Direct operate without acknowledgement: one-way by design. */
    req[0] = 0xc3;
    req[1] = 0x06;
    send_app(h, REQ, req, 2 + sizeof(crob));
    i = tx(h, 2);
    FIELD(h, i, "function_name", "\"direct_operate_no_ack\"");
    FIELD(h, i, "op_class", "\"control\"");
    FIELD(h, i, "status", "\"no_response\"");
    ABSENT(h, i, "dnp3.response");
    check_clean(h);
}

static void
test_analog_output_and_time(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* Direct operate g41v2 (int16) index 7 = -2, qualifier 0x17. */
    send_app(h, REQ, APP(0xc4, 0x05, 0x29, 0x02, 0x17, 0x01, 0x07, 0xfe, 0xff, 0x00));
    send_app(h, RSP, APP(0xc4, 0x81, 0x00, 0x00, 0x29, 0x02, 0x17, 0x01, 0x07, 0xfe, 0xff, 0x00));
    gint i = tx(h, 0);
    FIELD(h, i, "function_name", "\"direct_operate\"");
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "dnp3.request.objects.0.points.0.index", "7");
    FIELD(h, i, "dnp3.request.objects.0.points.0.value", "-2");

    /* Write g50v1 (time): a clock set. */
    send_app(h, REQ, APP(0xc5, 0x02, 0x32, 0x01, 0x07, 0x01, 0x10, 0x27, 0x00, 0x00, 0x00, 0x00));
    send_app(h, RSP, APP(0xc5, 0x81, 0x00, 0x00));
    i = tx(h, 1);
    FIELD(h, i, "function_name", "\"write\"");
    FIELD(h, i, "op_class", "\"time_set\"");
    FIELD(h, i, "dnp3.request.objects.0.points.0.time_ms", "10000");
    FIELD(h, i, "dnp3.response.object_count", "0");
    check_clean(h);
}

static void
test_function_classes(void)
{
    static const struct {
        guint8 fc;
        const char *name, *op;
    } cases[] = {
        {13, "cold_restart", "restart"},
        {14, "warm_restart", "restart"},
        {17, "start_application", "run_state"},
        {18, "stop_application", "run_state"},
        {20, "enable_unsolicited", "communication_control"},
        {21, "disable_unsolicited", "communication_control"},
        {24, "record_current_time", "time_set"},
        {25, "open_file", "file_transfer"},
        {30, "abort_file", "file_transfer"},
        {22, "assign_class", "config"},
        {9, "freeze_and_clear", "write"},
    };
    g_autoptr(OtsHarness) h = harness();
    for (guint k = 0; k < G_N_ELEMENTS(cases); k++) {
        guint8 seq = k & 0x0f;
        guint8 req[] = {0xc0 | seq, cases[k].fc};
        guint8 rsp[] = {0xc0 | seq, 0x81, 0x00, 0x00};
        send_app(h, REQ, req, sizeof(req));
        send_app(h, RSP, rsp, sizeof(rsp));
        gint i = tx(h, k);
        g_autofree gchar *name = g_strdup_printf("\"%s\"", cases[k].name);
        g_autofree gchar *op = g_strdup_printf("\"%s\"", cases[k].op);
        FIELD(h, i, "function_name", name);
        FIELD(h, i, "op_class", op);
        FIELD(h, i, "status", "\"ok\"");
    }
    check_clean(h);
}

static void
test_iin_exception(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_app(h, REQ, APP(0xc7, 0x01, 0x63, 0x01, 0x06)); /* read an unknown object */
    /* IIN1: restart + need time; IIN2: object unknown. */
    send_app(h, RSP, APP(0xc7, 0x81, 0x90, 0x02));
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"exception\"");
    FIELD(h, i, "dnp3.response.iin", "36866");
    FIELD(h, i, "dnp3.response.iin_flags", "[\"need_time\",\"device_restart\",\"object_unknown\"]");
    FIELD(h, i, "dnp3.request.objects.0.group", "99");
    check_clean(h);
}

static void
test_unsolicited_and_confirm(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* Unsolicited null response (after restart), then the master's confirm. */
    send_app(h, RSP, APP(0xf2, 0x82, 0x80, 0x00));
    send_app(h, REQ, APP(0xd2, 0x00));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    gint i = tx(h, 0);
    FIELD(h, i, "function", "130");
    FIELD(h, i, "function_name", "\"unsolicited_response\"");
    FIELD(h, i, "op_class", "\"monitor\"");
    FIELD(h, i, "status", "\"unsolicited\"");
    FIELD(h, i, "src_port", "20000");
    FIELD(h, i, "dnp3.master", "1");
    FIELD(h, i, "dnp3.outstation", "10");
    FIELD(h, i, "dnp3.response.uns", "true");
    FIELD(h, i, "dnp3.response.con", "true");
    FIELD(h, i, "dnp3.response.seq", "2");
    FIELD(h, i, "dnp3.response.iin_flags", "[\"device_restart\"]");
    ABSENT(h, i, "dnp3.request");
    ABSENT(h, i, "latency_us");
    i = tx(h, 1);
    FIELD(h, i, "function", "0");
    FIELD(h, i, "function_name", "\"confirm\"");
    FIELD(h, i, "status", "\"no_response\"");
    FIELD(h, i, "dnp3.request.uns", "true");
    check_clean(h);
}

static void
test_multi_fragment_response(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_app(h, REQ, READ_CLASS_0123(5));
    /* FIR, CON, seq 5; then FIN, seq 6 (each confirmed by the master). */
    send_app(h, RSP, APP(0xa5, 0x81, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x01));
    send_app(h, REQ, APP(0xc5, 0x00));
    ots_harness_set_time(h, T0 + 1000);
    send_app(h, RSP, APP(0x46, 0x81, 0x00, 0x00, 0x01, 0x02, 0x00, 0x01, 0x01, 0x01));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
    gint i = tx(h, 0);
    FIELD(h, i, "function_name", "\"read\"");
    FIELD(h, i, "dnp3.request.seq", "5");
    FIELD(h, i, "dnp3.response.fin", "false");
    i = tx(h, 1);
    FIELD(h, i, "function_name", "\"confirm\"");
    i = tx(h, 2);
    FIELD(h, i, "function_name", "\"read\"");
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "dnp3.continuation", "true");
    FIELD(h, i, "dnp3.response.fir", "false");
    FIELD(h, i, "dnp3.response.fin", "true");
    FIELD(h, i, "dnp3.response.seq", "6");
    ABSENT(h, i, "dnp3.request");
    ABSENT(h, i, "latency_us");
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
    check_clean(h);
}

/* Fixed-size objects without index prefixes are stepped over in one go
 * (walk_object()): the object after them is where it should be, and a run
 * cut short names its first missing object, as object by object did. */
static void
test_fixed_size_runs(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_app(h, REQ, READ_CLASS_0123(1));
    /* g30v1 0..1 (2 x 5 bytes), then g1v2 0..2 (3 x 1 byte) */
    send_app(h, RSP,
             APP(0xc1, 0x81, 0x00, 0x00, 0x1e, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 1, 2, 3, 4, 5,
                 6, 7, 8, 9, 10, 0x01, 0x02, 0x00, 0x00, 0x02, 0x81, 0x01, 0x81));
    gint i = tx(h, 0);
    FIELD(h, i, "dnp3.response.object_count", "2");
    FIELD(h, i, "dnp3.response.objects.0.group", "30");
    FIELD(h, i, "dnp3.response.objects.0.stop", "1");
    FIELD(h, i, "dnp3.response.objects.1.group", "1");
    FIELD(h, i, "dnp3.response.objects.1.variation", "2");
    FIELD(h, i, "dnp3.response.objects.1.stop", "2");
    FIELD(h, i, "dnp3.response.objects_truncated", "false");
    CU_ASSERT_EQUAL(ots_harness_count(h, "alert"), 0);
    /* g30v1 0..2 with 12 of its 15 bytes: object 2 is the first past the end */
    send_app(h, REQ, READ_CLASS_0123(2));
    send_app(h, RSP,
             APP(0xc2, 0x81, 0x00, 0x00, 0x1e, 0x01, 0x01, 0x00, 0x00, 0x02, 0x00, 1, 2, 3, 4, 5,
                 6, 7, 8, 9, 10, 11, 12));
    CU_ASSERT_EQUAL(alerts(h, "bad_object_length"), 1);
    gint a = ots_harness_find(h, "alert", 0);
    FIELD(h, a, "message", "\"object 30.1: object 2 past the end\"");
    FIELD(h, tx(h, 1), "dnp3.response.objects_truncated", "true");
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

/* ---- transport and framing --------------------------------------------- */

/* A response of @n objects g30v1 (5 bytes each) in one fragment. */
static gsize
big_response(guint8 *app, guint8 seq, guint n)
{
    app[0] = 0xc0 | seq;
    app[1] = 0x81;
    app[2] = app[3] = 0;
    app[4] = 30;
    app[5] = 1;
    app[6] = 0x01; /* 2-byte start/stop */
    app[7] = 0;
    app[8] = 0;
    app[9] = (guint8)((n - 1) & 0xff);
    app[10] = (guint8)((n - 1) >> 8);
    for (guint k = 0; k < n * 5; k++)
        app[11 + k] = (guint8)k;
    return 11 + (gsize)n * 5;
}

static void
test_transport_segments(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint8 app[2048];
    gsize n = big_response(app, 1, 200); /* 1011 bytes: 5 segments */
    send_app(h, REQ, READ_CLASS_0123(1));
    CU_ASSERT_EQUAL(send_app(h, RSP, app, n), OTS_PARSE_OK);
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "dnp3.response.segments", "5");
    FIELD(h, i, "dnp3.response.transport_seq", "4");
    FIELD(h, i, "dnp3.response.length", "1011");
    FIELD(h, i, "dnp3.response.objects.0.stop", "199");
    FIELD(h, i, "dnp3.response.objects_truncated", "false");
    FIELD(h, i, "dnp3.request.segments", "1");
    check_clean(h);
}

static void
test_split_byte_by_byte(void)
{
    g_autoptr(OtsHarness) h = harness();
    g_autoptr(GByteArray) b = g_byte_array_new();
    guint8 tseq = 0, app[2048];
    gsize n = big_response(app, 2, 60);
    send_app(h, REQ, READ_CLASS_0123(2));
    fragment_frames(b, RSP, OUTSTATION, MASTER, app, n, 100, &tseq);
    for (guint k = 0; k < b->len; k++) {
        OtsParseResult res = ots_harness_feed(h, RSP, b->data + k, 1);
        /* OK at frame boundaries, NEED_MORE inside a frame. */
        CU_ASSERT(res == OTS_PARSE_OK || res == OTS_PARSE_NEED_MORE);
        if (k + 1 == b->len)
            CU_ASSERT_EQUAL(res, OTS_PARSE_OK);
        if (k == 0)
            CU_ASSERT_EQUAL(res, OTS_PARSE_NEED_MORE);
        if (k + 1 < b->len)
            CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    }
    FIELD(h, tx(h, 0), "dnp3.response.segments", "4");
    FIELD(h, tx(h, 0), "dnp3.response.objects.0.stop", "59");
    check_clean(h);
}

static void
test_several_frames_one_feed(void)
{
    g_autoptr(OtsHarness) h = harness();
    g_autoptr(GByteArray) b = g_byte_array_new();
    guint8 tseq = 0;
    /* Two requests to two outstations in one segment, answered in reverse. */
    fragment_frames(b, REQ, MASTER, 10, READ_CLASS_0123(1), 249, &tseq);
    fragment_frames(b, REQ, MASTER, 11, READ_CLASS_0123(2), 249, &tseq);
    ots_harness_feed(h, REQ, b->data, b->len);
    g_byte_array_set_size(b, 0);
    fragment_frames(b, RSP, 11, MASTER, APP(0xc2, 0x81, 0x00, 0x00), 249, &tseq);
    fragment_frames(b, RSP, 10, MASTER, APP(0xc1, 0x81, 0x00, 0x00), 249, &tseq);
    ots_harness_feed(h, RSP, b->data, b->len);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    FIELD(h, tx(h, 0), "dnp3.request.dst", "11");
    FIELD(h, tx(h, 0), "dnp3.response.src", "11");
    FIELD(h, tx(h, 1), "dnp3.request.dst", "10");
    FIELD(h, tx(h, 1), "dnp3.request.seq", "1");
    check_clean(h);
}

static void
test_link_only_frames(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint8 f[32];
    /* Request link status, link status reply: no application data. */
    ots_harness_feed(h, REQ, f, link_frame(f, 0xc9, OUTSTATION, MASTER, NULL, 0));
    ots_harness_feed(h, RSP, f, link_frame(f, 0x0b, MASTER, OUTSTATION, NULL, 0));
    CU_ASSERT_EQUAL(ots_harness_n_events(h), 0);
    /* User data on a link function that carries none. */
    const guint8 user[] = {0xc0, 0xc0, 0x01};
    ots_harness_feed(h, REQ, f, link_frame(f, 0xc9, OUTSTATION, MASTER, user, sizeof(user)));
    CU_ASSERT_EQUAL(alerts(h, "bad_link_function"), 1);
    /* A user data frame without user data. */
    ots_harness_feed(h, REQ, f, link_frame(f, 0xc4, OUTSTATION, MASTER, NULL, 0));
    CU_ASSERT_EQUAL(alerts(h, "bad_length"), 1);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
}

static void
test_crc_errors(void)
{
    g_autoptr(OtsHarness) h = harness();
    g_autoptr(GByteArray) b = g_byte_array_new();
    guint8 tseq = 0;
    fragment_frames(b, REQ, MASTER, OUTSTATION, READ_CLASS_0123(1), 249, &tseq);
    b->data[12] ^= 0x01; /* first data byte: block CRC fails */
    ots_harness_feed(h, REQ, b->data, b->len);
    CU_ASSERT_EQUAL(alerts(h, "bad_crc"), 1);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);

    /* Header CRC error: framing is lost, the next good frame is found. */
    g_byte_array_set_size(b, 0);
    fragment_frames(b, REQ, MASTER, OUTSTATION, READ_CLASS_0123(2), 249, &tseq);
    b->data[8] ^= 0x01;
    fragment_frames(b, REQ, MASTER, OUTSTATION, READ_CLASS_0123(3), 249, &tseq);
    ots_harness_feed(h, REQ, b->data, b->len);
    CU_ASSERT_EQUAL(alerts(h, "bad_crc"), 2);
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    FIELD(h, tx(h, 0), "status", "\"unanswered\"");
    FIELD(h, tx(h, 0), "dnp3.request.seq", "3");
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_gap_resync(void)
{
    g_autoptr(OtsHarness) h = harness();
    g_autoptr(GByteArray) b = g_byte_array_new();
    guint8 tseq = 0;
    /* The capture starts mid-frame. */
    fragment_frames(b, REQ, MASTER, OUTSTATION, READ_CLASS_0123(1), 249, &tseq);
    fragment_frames(b, REQ, MASTER, OUTSTATION, READ_CLASS_0123(2), 249, &tseq);
    gsize first = b->len / 2;
    ots_harness_gap(h, REQ, 0);
    ots_harness_feed(h, REQ, b->data + 7, b->len - 7);
    send_app(h, RSP, APP(0xc2, 0x81, 0x00, 0x00));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    FIELD(h, tx(h, 0), "dnp3.request.seq", "2");
    FIELD(h, tx(h, 0), "status", "\"ok\"");

    /* A gap inside a multi-segment fragment drops that fragment. */
    guint8 app[2048];
    gsize n = big_response(app, 3, 100);
    send_app(h, REQ, READ_CLASS_0123(3));
    g_byte_array_set_size(b, 0);
    fragment_frames(b, RSP, OUTSTATION, MASTER, app, n, 249, &tseq);
    ots_harness_feed(h, RSP, b->data, 100);
    ots_harness_gap(h, RSP, 50);
    ots_harness_feed(h, RSP, b->data + 400, b->len - 400);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    /* The transport notices the missing first segment. */
    CU_ASSERT(alerts(h, "transport_sequence") >= 1);
    send_app(h, RSP, APP(0xc3, 0x81, 0x00, 0x00));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    FIELD(h, tx(h, 1), "status", "\"ok\"");
    (void)first;
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_bad_start_and_length(void)
{
    g_autoptr(OtsHarness) h = harness();
    const guint8 junk[] = {0x01, 0x02, 0x03, 0x04};
    ots_harness_feed(h, REQ, junk, sizeof(junk));
    CU_ASSERT_EQUAL(alerts(h, "bad_start"), 1);
    send_app(h, REQ, READ_CLASS_0123(1));
    CU_ASSERT_EQUAL(alerts(h, "bad_start"), 1);

    /* Length 4 with a valid header CRC. */
    guint8 f[16] = {0x05, 0x64, 0x04, 0xc4, 0x0a, 0x00, 0x01, 0x00};
    put_crc(f, 8);
    ots_harness_feed(h, REQ, f, 10);
    CU_ASSERT_EQUAL(alerts(h, "bad_length"), 1);

    /* Too short application fragments. */
    send_app(h, REQ, APP(0xc1));
    send_app(h, RSP, APP(0xc1, 0x81, 0x00));
    CU_ASSERT_EQUAL(alerts(h, "bad_length"), 3);
    send_app(h, RSP, APP(0xc1, 0x81, 0x00, 0x00));
    FIELD(h, tx(h, 0), "status", "\"ok\"");
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_transport_sequence(void)
{
    g_autoptr(OtsHarness) h = harness();
    g_autoptr(GByteArray) b = g_byte_array_new();
    guint8 tseq = 0, app[2048];
    gsize n = big_response(app, 1, 100);
    send_app(h, REQ, READ_CLASS_0123(1));
    fragment_frames(b, RSP, OUTSTATION, MASTER, app, n, 249, &tseq);
    /* Second segment's transport header: skip a sequence number (byte 10
     * of the second frame, which follows a 292-byte frame). */
    b->data[292 + 10] = (guint8)((b->data[292 + 10] & 0xc0) | 0x05);
    put_crc(b->data + 292 + 10, 16);
    ots_harness_feed(h, RSP, b->data, b->len);
    CU_ASSERT(alerts(h, "transport_sequence") >= 1);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);

    /* A new first segment abandons the incomplete fragment. */
    g_byte_array_set_size(b, 0);
    fragment_frames(b, RSP, OUTSTATION, MASTER, app, n, 249, &tseq);
    ots_harness_feed(h, RSP, b->data, 292);
    send_app(h, RSP, APP(0xc1, 0x81, 0x00, 0x00));
    CU_ASSERT_EQUAL(alerts(h, "incomplete_fragment"), 1);
    FIELD(h, tx(h, 0), "status", "\"ok\"");
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_fragment_too_large(void)
{
    g_autoptr(OtsHarness) h = harness();
    g_autoptr(GByteArray) b = g_byte_array_new();
    gsize n = 70000;
    guint8 *app = g_malloc0(n), tseq = 0;
    app[0] = 0xc1;
    app[1] = 0x81;
    fragment_frames(b, RSP, OUTSTATION, MASTER, app, n, 249, &tseq);
    ots_harness_feed(h, RSP, b->data, b->len);
    g_free(app);
    CU_ASSERT_EQUAL(alerts(h, "fragment_too_large"), 1);
    CU_ASSERT_EQUAL(alerts(h, "transport_sequence"), 0);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    /* The next fragment is reassembled normally. */
    send_app(h, RSP, APP(0xf2, 0x82, 0x00, 0x00));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_bad_objects(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* Unknown object with data (write): its size is unknown. */
    send_app(h, REQ, APP(0xc1, 0x02, 0x63, 0x07, 0x07, 0x01, 0xaa, 0xbb));
    CU_ASSERT_EQUAL(alerts(h, "unknown_object"), 1);
    send_app(h, RSP, APP(0xc1, 0x81, 0x00, 0x00));
    FIELD(h, tx(h, 0), "status", "\"ok\"");
    FIELD(h, tx(h, 0), "dnp3.request.objects_truncated", "true");
    FIELD(h, tx(h, 0), "dnp3.request.objects.0.group", "99");
    /* Reserved qualifier (prefix 7). */
    send_app(h, REQ, APP(0xc2, 0x01, 0x01, 0x02, 0x76));
    CU_ASSERT_EQUAL(alerts(h, "bad_qualifier"), 1);
    /* stop < start. */
    send_app(h, REQ, APP(0xc3, 0x01, 0x01, 0x02, 0x00, 0x05, 0x02));
    CU_ASSERT_EQUAL(alerts(h, "bad_range"), 1);
    /* Points past the end of the fragment. */
    send_app(h, RSP, APP(0xc3, 0x81, 0x00, 0x00, 0x1e, 0x01, 0x00, 0x00, 0x09, 0x01, 0x02));
    CU_ASSERT_EQUAL(alerts(h, "bad_object_length"), 1);
    gint i = tx(h, 1);
    FIELD(h, i, "dnp3.request.seq", "3");
    FIELD(h, i, "dnp3.response.objects_truncated", "true");
    FIELD(h, i, "dnp3.response.objects.0.stop", "9");
    /* Truncated object header; unknown function code; request over two
     * fragments. */
    send_app(h, REQ, APP(0xc4, 0x01, 0x3c));
    CU_ASSERT_EQUAL(alerts(h, "bad_object_length"), 2);
    send_app(h, REQ, APP(0xc5, 0x64));
    CU_ASSERT_EQUAL(alerts(h, "bad_function_code"), 1);
    send_app(h, REQ, APP(0x86, 0x01));
    CU_ASSERT_EQUAL(alerts(h, "bad_app_control"), 1);
    /* CROB with an invalid operation type. */
    send_app(h, REQ,
             APP(0xc7, 0x05, 0x0c, 0x01, 0x17, 0x01, 0x00, 0x0f, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0));
    CU_ASSERT_EQUAL(alerts(h, "bad_value"), 1);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_response_without_request(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_app(h, RSP, APP(0xc9, 0x81, 0x00, 0x00));
    CU_ASSERT_EQUAL(alerts(h, "response_without_request"), 1);
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"no_request\"");
    FIELD(h, i, "function", "129");
    FIELD(h, i, "src_port", "40000");
    FIELD(h, i, "dnp3.response.seq", "9");
    ABSENT(h, i, "dnp3.request");

    /* A response with another sequence number still pairs, flagged. */
    send_app(h, REQ, READ_CLASS_0123(1));
    send_app(h, RSP, APP(0xc2, 0x81, 0x00, 0x00));
    CU_ASSERT_EQUAL(alerts(h, "sequence_mismatch"), 1);
    FIELD(h, tx(h, 1), "status", "\"ok\"");
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_unanswered(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* Pipelined requests (and a retry of seq 1) to one outstation; the
     * responses pair by sequence number, oldest first. */
    send_app(h, REQ, READ_CLASS_0123(1));
    send_app(h, REQ, READ_CLASS_0123(2));
    ots_harness_set_time(h, T0 + 100);
    send_app(h, REQ, READ_CLASS_0123(1));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    ots_harness_set_time(h, T0 + 1000);
    send_app(h, RSP, APP(0xc2, 0x81, 0x00, 0x00));
    send_app(h, RSP, APP(0xc1, 0x81, 0x00, 0x00));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    FIELD(h, tx(h, 0), "dnp3.request.seq", "2");
    FIELD(h, tx(h, 0), "latency_us", "1000");
    FIELD(h, tx(h, 1), "dnp3.request.seq", "1");
    FIELD(h, tx(h, 1), "latency_us", "1000");
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
    FIELD(h, tx(h, 2), "status", "\"unanswered\"");
    FIELD(h, tx(h, 2), "dnp3.request.seq", "1");
    ABSENT(h, tx(h, 2), "latency_us");
    check_clean(h);
}

static void
test_unanswered_timeout(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_app(h, REQ, READ_CLASS_0123(1));
    ots_harness_set_time(h, T0 + 31 * G_USEC_PER_SEC);
    g_autoptr(GByteArray) b = g_byte_array_new();
    guint8 tseq = 0;
    fragment_frames(b, REQ, MASTER, 11, READ_CLASS_0123(2), 249, &tseq);
    ots_harness_feed(h, REQ, b->data, b->len);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    FIELD(h, tx(h, 0), "status", "\"unanswered\"");
    FIELD(h, tx(h, 0), "dnp3.request.dst", "10");
    check_clean(h);
}

static void
test_pending_bounded(void)
{
    g_autoptr(OtsHarness) h = harness();
    g_autoptr(GByteArray) b = g_byte_array_new();
    guint8 tseq = 0;
    for (guint k = 0; k < 100; k++)
        fragment_frames(b, REQ, MASTER, (guint16)(100 + k), READ_CLASS_0123(1), 249, &tseq);
    ots_harness_feed(h, REQ, b->data, b->len);
    /* At most 16 outstanding: the oldest are reported unanswered. */
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 84);
    FIELD(h, tx(h, 0), "dnp3.request.dst", "100");
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 100);
    check_clean(h);
}

static void
test_broadcast(void)
{
    g_autoptr(OtsHarness) h = harness();
    g_autoptr(GByteArray) b = g_byte_array_new();
    guint8 tseq = 0;
    fragment_frames(b, REQ, MASTER, 0xffff, APP(0xc1, 0x0e), 249, &tseq);
    ots_harness_feed(h, REQ, b->data, b->len);
    gint i = tx(h, 0);
    FIELD(h, i, "function_name", "\"warm_restart\"");
    FIELD(h, i, "op_class", "\"restart\"");
    FIELD(h, i, "status", "\"no_response\"");
    FIELD(h, i, "dnp3.request.dst", "65535");
    check_clean(h);
}

static void
test_device_attributes(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_app(h, REQ, APP(0xc1, 0x01, 0x00, 0xfe, 0x06)); /* read all attributes */
    /* g0v252 "ACME", g0v250 "RTU-5", g0v242 "2.1" (index-less single
     * points, qualifier 0x00), g0v248 an integer (not a string). */
    send_app(h, RSP,
             APP(0xc1, 0x81, 0x00, 0x00, 0x00, 0xfc, 0x00, 0xfc, 0xfc, 0x01, 0x04, 'A', 'C', 'M',
                 'E', 0x00, 0xfa, 0x00, 0xfa, 0xfa, 0x01, 0x05, 'R', 'T', 'U', '-', '5', 0x00, 0xf2,
                 0x00, 0xf2, 0xf2, 0x01, 0x03, '2', '.', '1', 0x00, 0xf8, 0x00, 0xf8, 0xf8, 0x02,
                 0x01, 0x07));
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "dnp3.response.object_count", "4");
    FIELD(h, i, "dnp3.request.objects.0.variation", "254");
    gint a = ots_harness_find(h, "asset", 0);
    CU_ASSERT(a > i);
    FIELD(h, a, "role", "\"controller\"");
    FIELD(h, a, "vendor", "\"ACME\"");
    FIELD(h, a, "product", "\"RTU-5\"");
    FIELD(h, a, "firmware", "\"2.1\"");
    FIELD(h, a, "port", "20000");
    FIELD(h, a, "dnp3.address", "10");
    ABSENT(h, a, "serial");
    check_clean(h);
}

static void
test_udp(void)
{
    g_autoptr(OtsHarness) h = ots_harness_new(dnp3(), OTS_L4_UDP, 20000);
    ots_harness_set_time(h, T0);
    g_autoptr(GByteArray) b = g_byte_array_new();
    guint8 tseq = 0;
    fragment_frames(b, REQ, MASTER, OUTSTATION, READ_CLASS_0123(4), 249, &tseq);
    CU_ASSERT_EQUAL(ots_harness_feed(h, REQ, b->data, b->len), OTS_PARSE_OK);
    g_byte_array_set_size(b, 0);
    fragment_frames(b, RSP, OUTSTATION, MASTER, READ_RESPONSE(4), 249, &tseq);
    /* A datagram cut short. */
    CU_ASSERT_EQUAL(ots_harness_feed(h, RSP, b->data, b->len - 3), OTS_PARSE_OK);
    CU_ASSERT_EQUAL(alerts(h, "bad_length"), 1);
    CU_ASSERT_EQUAL(ots_harness_feed(h, RSP, b->data, b->len), OTS_PARSE_OK);
    FIELD(h, tx(h, 0), "status", "\"ok\"");
    FIELD(h, tx(h, 0), "dnp3.response.object_count", "2");
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

/* ---- memory budget (flows.memcap_mb) ----------------------------------- */

#define MEMCAP_NORMAL (1024 * 1024)
#define MEMCAP_TINY 32 /* less than one pending request */
#define FRAME_250 292  /* a link frame with 250 bytes of user data */

/* Every charge is refunded: pairs, expiry, reassembly, flow end. */
static void
test_memcap_balanced(void)
{
    g_autoptr(OtsHarness) h = harness();
    ots_harness_set_memcap(h, MEMCAP_NORMAL);
    gsize base = ots_harness_mem_used(h);

    send_app(h, REQ, READ_CLASS_0123(1));
    CU_ASSERT(ots_harness_mem_used(h) > base);
    send_app(h, RSP, READ_RESPONSE(1));
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);

    /* a multi-fragment response keeps its request until the last */
    send_app(h, REQ, READ_CLASS_0123(5));
    send_app(h, RSP, APP(0xa5, 0x81, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x01));
    CU_ASSERT(ots_harness_mem_used(h) > base);
    send_app(h, RSP, APP(0x46, 0x81, 0x00, 0x00, 0x01, 0x02, 0x00, 0x01, 0x01, 0x01));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);

    /* unanswered requests, expired */
    send_app(h, REQ, READ_CLASS_0123(2));
    send_app(h, REQ, READ_CLASS_0123(3));
    CU_ASSERT(ots_harness_mem_used(h) > base);
    ots_harness_tick(h, T0 + 31 * G_USEC_PER_SEC);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 5);
    FIELD(h, tx(h, 4), "status", "\"unanswered\"");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);

    /* a fragment of 11 segments, over the buffer kept between fragments */
    send_app(h, REQ, READ_CLASS_0123(4));
    gsize pending = ots_harness_mem_used(h);
    g_autoptr(GByteArray) b = g_byte_array_new();
    guint8 tseq = 0, app[4096];
    gsize n = big_response(app, 4, 500); /* 2511 bytes */
    fragment_frames(b, RSP, OUTSTATION, MASTER, app, n, 249, &tseq);
    ots_harness_feed(h, RSP, b->data, 10 * FRAME_250);
    CU_ASSERT(ots_harness_mem_used(h) > pending + 2048);
    ots_harness_feed(h, RSP, b->data + 10 * FRAME_250, b->len - 10 * FRAME_250);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 6);
    FIELD(h, tx(h, 5), "dnp3.response.segments", "11");
    FIELD(h, tx(h, 5), "dnp3.response.length", "2511");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);

    /* what is pending, or half reassembled, at flow end */
    send_app(h, REQ, READ_CLASS_0123(6));
    ots_harness_feed(h, RSP, b->data, 10 * FRAME_250);
    CU_ASSERT(ots_harness_mem_used(h) > base);
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 7);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);
    CU_ASSERT_EQUAL(ots_harness_memcap_refused(h), 0);
    check_clean(h);
}

/* Over the budget, requests are reported at once, none lost. */
static void
test_memcap_requests(void)
{
    g_autoptr(OtsHarness) h = harness();
    ots_harness_set_memcap(h, MEMCAP_TINY);
    for (guint k = 0; k < 4; k++) {
        send_app(h, REQ, READ_CLASS_0123(k));
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), k + 1);
        g_autofree gchar *seq = g_strdup_printf("%u", k);
        FIELD(h, tx(h, k), "status", "\"unanswered\"");
        FIELD(h, tx(h, k), "function_name", "\"read\"");
        FIELD(h, tx(h, k), "dnp3.request.seq", seq);
        FIELD(h, tx(h, k), "dnp3.request.object_count", "4");
        ABSENT(h, tx(h, k), "dnp3.response");
    }
    CU_ASSERT(ots_harness_memcap_refused(h) > 0);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
    send_app(h, RSP, READ_RESPONSE(3));
    FIELD(h, tx(h, 4), "status", "\"no_request\"");
    CU_ASSERT_EQUAL(alerts(h, "response_without_request"), 1);
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 5);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);

    /* Room for two: each new one lets the oldest go, reported unanswered. */
    gsize one;
    {
        g_autoptr(OtsHarness) m = harness();
        send_app(m, REQ, READ_CLASS_0123(0));
        one = ots_harness_mem_used(m);
    }
    g_autoptr(OtsHarness) h2 = harness();
    ots_harness_set_memcap(h2, 2 * one + one / 2);
    for (guint k = 0; k < 5; k++)
        send_app(h2, REQ, READ_CLASS_0123(k));
    CU_ASSERT_EQUAL(ots_harness_count(h2, "transaction"), 3);
    for (guint k = 0; k < 3; k++) {
        g_autofree gchar *seq = g_strdup_printf("%u", k);
        FIELD(h2, tx(h2, k), "status", "\"unanswered\"");
        FIELD(h2, tx(h2, k), "dnp3.request.seq", seq);
    }
    CU_ASSERT(ots_harness_memcap_refused(h2) > 0);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h2), 2 * one);
    send_app(h2, RSP, READ_RESPONSE(4));
    FIELD(h2, tx(h2, 3), "status", "\"ok\"");
    FIELD(h2, tx(h2, 3), "dnp3.request.seq", "4");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h2), one);
    ots_harness_end(h2);
    CU_ASSERT_EQUAL(ots_harness_count(h2, "transaction"), 5);
    FIELD(h2, tx(h2, 4), "dnp3.request.seq", "3");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h2), 0);
    check_clean(h2);
}

/* Over the budget, a fragment that needs a larger buffer is dropped with an
 * anomaly; the next one is reassembled. */
static void
test_memcap_reassembly(void)
{
    g_autoptr(OtsHarness) h = harness();
    ots_harness_set_memcap(h, 1024);
    send_app(h, REQ, READ_CLASS_0123(4));
    g_autoptr(GByteArray) b = g_byte_array_new();
    guint8 tseq = 0, app[4096];
    gsize n = big_response(app, 4, 500);
    fragment_frames(b, RSP, OUTSTATION, MASTER, app, n, 249, &tseq);
    ots_harness_feed(h, RSP, b->data, b->len);
    CU_ASSERT_EQUAL(alerts(h, "memcap"), 1);
    CU_ASSERT_EQUAL(alerts(h, "transport_sequence"), 0);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    CU_ASSERT(ots_harness_memcap_refused(h) > 0);
    /* a fragment within the kept buffer still pairs */
    send_app(h, RSP, READ_RESPONSE(4));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    FIELD(h, tx(h, 0), "status", "\"ok\"");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
    /* dropped again mid-way, then the flow ends */
    ots_harness_feed(h, RSP, b->data, 10 * FRAME_250);
    CU_ASSERT_EQUAL(alerts(h, "memcap"), 2);
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_random_garbage(void)
{
    g_autoptr(GRand) rnd = g_rand_new_with_seed(0x646e7033);
    for (guint round = 0; round < 200; round++) {
        g_autoptr(OtsHarness) h = harness();
        for (guint k = 0; k < 30; k++) {
            OtsDirection dir = g_rand_boolean(rnd) ? REQ : RSP;
            guint8 app[600];
            gsize n = (gsize)g_rand_int_range(rnd, 1, sizeof(app));
            for (gsize j = 0; j < n; j++)
                app[j] = (guint8)g_rand_int(rnd);
            /* Mostly valid frames with random application bytes, so the
             * object walker gets exercised; sometimes raw garbage. */
            if (n >= 2 && g_rand_boolean(rnd))
                app[1] = dir == REQ ? (guint8)g_rand_int_range(rnd, 0, 34) : 0x81;
            ots_harness_set_time(h, T0 + (gint64)k * 2 * G_USEC_PER_SEC);
            if (g_rand_int_range(rnd, 0, 4) == 0) {
                ots_harness_feed(h, dir, app, n);
            } else {
                g_autoptr(GByteArray) b = g_byte_array_new();
                guint8 tseq = (guint8)g_rand_int(rnd);
                fragment_frames(b, dir, MASTER, OUTSTATION, app, n,
                                (gsize)g_rand_int_range(rnd, 1, 250), &tseq);
                if (g_rand_int_range(rnd, 0, 5) == 0)
                    b->data[g_rand_int_range(rnd, 0, (gint32)b->len)] ^= 0x10;
                ots_harness_feed(h, dir, b->data, b->len);
            }
            if (g_rand_int_range(rnd, 0, 10) == 0)
                ots_harness_gap(h, dir, (guint32)g_rand_int_range(rnd, 0, 100));
        }
        ots_harness_end(h);
        CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
    }
}

static CU_TestInfo dnp3_tests[] = {
    {"descriptor", test_descriptor},
    {"probe", test_probe},
    {"read class data (1)", test_read_class_data},
    {"select/operate/direct operate no ack, CROB details", test_crob_details},
    {"analog output block, write time", test_analog_output_and_time},
    {"function names and operation classes", test_function_classes},
    {"IIN bits and exception", test_iin_exception},
    {"unsolicited response and confirm", test_unsolicited_and_confirm},
    {"multi-fragment response", test_multi_fragment_response},
    {"fixed-size objects stepped over", test_fixed_size_runs},
    {"transport segments reassembled", test_transport_segments},
    {"frames split byte by byte", test_split_byte_by_byte},
    {"several frames in one feed, two outstations", test_several_frames_one_feed},
    {"link-only frames", test_link_only_frames},
    {"CRC errors", test_crc_errors},
    {"gap and resync", test_gap_resync},
    {"bad start bytes and lengths", test_bad_start_and_length},
    {"transport sequence errors", test_transport_sequence},
    {"fragment too large", test_fragment_too_large},
    {"malformed object headers", test_bad_objects},
    {"response without request, sequence mismatch", test_response_without_request},
    {"unanswered at new request and flow end", test_unanswered},
    {"unanswered after 30 s", test_unanswered_timeout},
    {"pending requests bounded", test_pending_bounded},
    {"broadcast request", test_broadcast},
    {"device attributes (group 0) and asset", test_device_attributes},
    {"UDP datagrams", test_udp},
    {"memory budget: every charge refunded", test_memcap_balanced},
    {"memory budget: requests reported at once", test_memcap_requests},
    {"memory budget: reassembly dropped", test_memcap_reassembly},
    {"random garbage never crashes", test_random_garbage},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES                                                                            \
    {                                                                                              \
        "dnp3", NULL, NULL, NULL, NULL, dnp3_tests                                                 \
    }
#include "cunit-main.h"
