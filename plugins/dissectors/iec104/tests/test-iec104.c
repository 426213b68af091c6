/* SPDX-License-Identifier: Apache-2.0 */

/* IEC 60870-5-104 dissector tests: APDUs built by hand, fed through the
 * dissector harness exactly as the pipeline feeds reassembled TCP, events
 * checked field by field. */

#include <stdio.h>
#include <CUnit/CUnit.h>
#include <otsensor/dissector.h>
#include "core/dissect/harness.h"
#include "dissector-test.h"

const OtsPluginHeader *ots_plugin_get_info(void);

#define CLI OTS_DIR_TO_SERVER /* the controlling station */
#define SRV OTS_DIR_TO_CLIENT /* the controlled station (port 2404) */
#define T0 ((gint64)1700000000 * G_USEC_PER_SEC)

/* A byte-array literal and its length. */
#define BYTES(...) (const guint8[]){__VA_ARGS__}, sizeof((const guint8[]){__VA_ARGS__})

static const guint8 startdt_act[] = {0x68, 4, 0x07, 0, 0, 0};
static const guint8 startdt_con[] = {0x68, 4, 0x0b, 0, 0, 0};
static const guint8 stopdt_act[] = {0x68, 4, 0x13, 0, 0, 0};
static const guint8 stopdt_con[] = {0x68, 4, 0x23, 0, 0, 0};
static const guint8 testfr_act[] = {0x68, 4, 0x43, 0, 0, 0};
static const guint8 testfr_con[] = {0x68, 4, 0x83, 0, 0, 0};

static const OtsDissectorInfo *
iec104(void)
{
    return (const OtsDissectorInfo *)ots_plugin_get_info();
}

static OtsHarness *
harness(void)
{
    OtsHarness *h = ots_harness_new(iec104(), OTS_L4_TCP, 2404);
    ots_harness_set_time(h, T0);
    return h;
}

/* Writes an I-format APDU carrying @asdu into @out; returns its length. */
static gsize
iframe(guint8 *out, guint16 ns, guint16 nr, const guint8 *asdu, gsize n)
{
    out[0] = 0x68;
    out[1] = (guint8)(n + 4);
    out[2] = (guint8)(ns << 1);
    out[3] = (guint8)(ns >> 7);
    out[4] = (guint8)(nr << 1);
    out[5] = (guint8)(nr >> 7);
    memcpy(out + 6, asdu, n);
    return n + 6;
}

static OtsParseResult
send_i(OtsHarness *h, OtsDirection dir, guint16 ns, guint16 nr, const guint8 *asdu, gsize n)
{
    guint8 buf[300];
    g_assert(n <= 249);
    return ots_harness_feed(h, dir, buf, iframe(buf, ns, nr, asdu, n));
}

static OtsParseResult
send_s(OtsHarness *h, OtsDirection dir, guint16 nr)
{
    guint8 buf[6] = {0x68, 4, 0x01, 0, (guint8)(nr << 1), (guint8)(nr >> 7)};
    return ots_harness_feed(h, dir, buf, sizeof(buf));
}

static gint
tx(OtsHarness *h, guint nth)
{
    return ots_harness_find(h, "transaction", nth);
}

/* ---- descriptor and probe ---------------------------------------------- */

static void
test_descriptor(void)
{
    const OtsDissectorInfo *d = iec104();
    CU_ASSERT_EQUAL(d->abi_major, OTS_ABI_MAJOR);
    CU_ASSERT(d->abi_minor <= OTS_ABI_MINOR);
    CU_ASSERT_EQUAL(d->kind, OTS_PLUGIN_KIND_DISSECTOR);
    CU_ASSERT_STRING_EQUAL(d->name, "iec104");
    CU_ASSERT_EQUAL(d->tcp_ports[0], 2404);
    CU_ASSERT_EQUAL(d->tcp_ports[1], 0);
    CU_ASSERT_PTR_NULL(d->udp_ports);
    CU_ASSERT_PTR_NOT_NULL(d->probe);
    CU_ASSERT_PTR_NOT_NULL(d->parse);
    CU_ASSERT_PTR_NOT_NULL(d->gap);
    CU_ASSERT_PTR_NOT_NULL(d->flow_end);
    CU_ASSERT_PTR_NOT_NULL(d->tick);
}

static OtsProbeResult
probe(const guint8 *data, gsize n, OtsL4Proto l4)
{
    OtsReader r = OTS_READER_INIT(data, n);
    return iec104()->probe(&r, OTS_DIR_TO_SERVER, l4);
}

static void
test_probe(void)
{
    static const guint8 interrogation[] = {0x68, 0x0e, 0,  0, 0, 0, 100, 1,
                                           6,    0,    10, 0, 0, 0, 0,   20};
    static const guint8 sframe[] = {0x68, 4, 0x01, 0, 0x02, 0};
    static const guint8 bad_u[] = {0x68, 4, 0x0f, 0, 0, 0};
    static const guint8 bad_type[] = {0x68, 0x0e, 0, 0, 0, 0, 99, 1, 6, 0, 10, 0, 0, 0, 0, 20};
    static const guint8 bad_cot[] = {0x68, 0x0e, 0, 0, 0, 0, 100, 1, 63, 0, 10, 0, 0, 0, 0, 20};
    static const guint8 two[] = {0x68, 4, 0x07, 0, 0, 0, 0x68, 4, 0x43, 0, 0, 0};
    static const guint8 bad_next[] = {0x68, 4, 0x07, 0, 0, 0, 0x00};
    static const guint8 http[] = "GET / HTTP/1.1\r\n";

    CU_ASSERT_EQUAL(probe(startdt_act, sizeof(startdt_act), OTS_L4_TCP), OTS_PROBE_YES);
    CU_ASSERT_EQUAL(probe(testfr_con, sizeof(testfr_con), OTS_L4_TCP), OTS_PROBE_YES);
    CU_ASSERT_EQUAL(probe(interrogation, sizeof(interrogation), OTS_L4_TCP), OTS_PROBE_YES);
    CU_ASSERT_EQUAL(probe(sframe, sizeof(sframe), OTS_L4_TCP), OTS_PROBE_YES);
    CU_ASSERT_EQUAL(probe(two, sizeof(two), OTS_L4_TCP), OTS_PROBE_YES);
    CU_ASSERT_EQUAL(probe(bad_u, sizeof(bad_u), OTS_L4_TCP), OTS_PROBE_NO);
    CU_ASSERT_EQUAL(probe(bad_type, sizeof(bad_type), OTS_L4_TCP), OTS_PROBE_NO);
    CU_ASSERT_EQUAL(probe(bad_cot, sizeof(bad_cot), OTS_L4_TCP), OTS_PROBE_NO);
    CU_ASSERT_EQUAL(probe(bad_next, sizeof(bad_next), OTS_L4_TCP), OTS_PROBE_NO);
    CU_ASSERT_EQUAL(probe(http, sizeof(http) - 1, OTS_L4_TCP), OTS_PROBE_NO);
    CU_ASSERT_EQUAL(probe(startdt_act, sizeof(startdt_act), OTS_L4_UDP), OTS_PROBE_NO);
    CU_ASSERT_EQUAL(probe(startdt_act, 3, OTS_L4_TCP), OTS_PROBE_NEED_MORE);
    CU_ASSERT_EQUAL(probe(startdt_act, 0, OTS_L4_TCP), OTS_PROBE_NEED_MORE);
    CU_ASSERT_EQUAL(probe(interrogation, 7, OTS_L4_TCP), OTS_PROBE_NEED_MORE);
}

/* ---- U and S formats --------------------------------------------------- */

static void
test_u_frames(void)
{
    g_autoptr(OtsHarness) h = harness();
    CU_ASSERT_EQUAL(ots_harness_feed(h, CLI, startdt_act, sizeof(startdt_act)), OTS_PARSE_OK);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    ots_harness_set_time(h, T0 + 1500);
    ots_harness_feed(h, SRV, startdt_con, sizeof(startdt_con));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    FIELD(h, tx(h, 0), "proto", "\"iec104\"");
    FIELD(h, tx(h, 0), "function", "7");
    FIELD(h, tx(h, 0), "function_name", "\"startdt\"");
    FIELD(h, tx(h, 0), "op_class", "\"session\"");
    FIELD(h, tx(h, 0), "status", "\"ok\"");
    FIELD(h, tx(h, 0), "latency_us", "1500");
    FIELD(h, tx(h, 0), "iec104.apci_type", "\"u\"");
    FIELD(h, tx(h, 0), "iec104.u_function", "\"startdt_act\"");
    FIELD(h, tx(h, 0), "iec104.response.apci_type", "\"u\"");
    FIELD(h, tx(h, 0), "iec104.response.u_function", "\"startdt_con\"");
    ABSENT(h, tx(h, 0), "iec104.send_seq");

    /* TESTFR from the controlled station: the requester is the server. */
    ots_harness_feed(h, SRV, testfr_act, sizeof(testfr_act));
    ots_harness_set_time(h, T0 + 5000);
    ots_harness_feed(h, CLI, testfr_con, sizeof(testfr_con));
    FIELD(h, tx(h, 1), "function_name", "\"testfr\"");
    FIELD(h, tx(h, 1), "function", "67");
    FIELD(h, tx(h, 1), "src_port", "2404");
    FIELD(h, tx(h, 1), "latency_us", "3500");

    ots_harness_feed(h, CLI, stopdt_act, sizeof(stopdt_act));
    ots_harness_feed(h, SRV, stopdt_con, sizeof(stopdt_con));
    FIELD(h, tx(h, 2), "function_name", "\"stopdt\"");
    FIELD(h, tx(h, 2), "op_class", "\"communication_control\"");
    FIELD(h, tx(h, 2), "status", "\"ok\"");
    check_clean(h);
}

static void
test_s_frame(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_s(h, CLI, 300);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    FIELD(h, tx(h, 0), "function_name", "\"s_frame\"");
    FIELD(h, tx(h, 0), "function", "1");
    FIELD(h, tx(h, 0), "status", "\"no_response\"");
    FIELD(h, tx(h, 0), "op_class", "\"session\"");
    FIELD(h, tx(h, 0), "iec104.apci_type", "\"s\"");
    FIELD(h, tx(h, 0), "iec104.recv_seq", "300");
    ABSENT(h, tx(h, 0), "iec104.response");
    ABSENT(h, tx(h, 0), "latency_us");
    check_clean(h);
}

/* ---- commands and their confirmations ---------------------------------- */

static void
test_interrogation(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* C_IC_NA_1 act, station interrogation (QOI 20), CA 10, IOA 0. */
    send_i(h, CLI, 0, 0, BYTES(100, 0x01, 6, 0, 10, 0, 0, 0, 0, 20));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    ots_harness_set_time(h, T0 + 2000);
    send_i(h, SRV, 0, 1, BYTES(100, 0x01, 7, 0, 10, 0, 0, 0, 0, 20));
    FIELD(h, tx(h, 0), "function", "100");
    FIELD(h, tx(h, 0), "function_name", "\"C_IC_NA_1\"");
    FIELD(h, tx(h, 0), "op_class", "\"interrogation\"");
    FIELD(h, tx(h, 0), "status", "\"ok\"");
    FIELD(h, tx(h, 0), "latency_us", "2000");
    FIELD(h, tx(h, 0), "iec104.apci_type", "\"i\"");
    FIELD(h, tx(h, 0), "iec104.send_seq", "0");
    FIELD(h, tx(h, 0), "iec104.cot", "6");
    FIELD(h, tx(h, 0), "iec104.cot_name", "\"activation\"");
    FIELD(h, tx(h, 0), "iec104.common_address", "10");
    FIELD(h, tx(h, 0), "iec104.objects.0.ioa", "0");
    FIELD(h, tx(h, 0), "iec104.objects.0.qualifier", "20");
    FIELD(h, tx(h, 0), "iec104.response.cot", "7");
    FIELD(h, tx(h, 0), "iec104.response.recv_seq", "1");
    FIELD(h, tx(h, 0), "iec104.response.negative", "false");

    /* Interrogated data: M_SP_NA_1, SQ=1, 3 objects from IOA 1. */
    send_i(h, SRV, 1, 1, BYTES(1, 0x83, 20, 0, 10, 0, 1, 0, 0, 0x01, 0x00, 0x81));
    FIELD(h, tx(h, 1), "status", "\"unsolicited\"");
    FIELD(h, tx(h, 1), "op_class", "\"read\"");
    FIELD(h, tx(h, 1), "src_port", "2404");
    FIELD(h, tx(h, 1), "iec104.sq", "true");
    FIELD(h, tx(h, 1), "iec104.num_objects", "3");
    FIELD(h, tx(h, 1), "iec104.cot_name", "\"interrogated_station\"");
    FIELD(h, tx(h, 1), "iec104.objects.0.ioa", "1");
    FIELD(h, tx(h, 1), "iec104.objects.0.value", "true");
    ABSENT(h, tx(h, 1), "iec104.objects.0.quality");
    FIELD(h, tx(h, 1), "iec104.objects.1.ioa", "2");
    FIELD(h, tx(h, 1), "iec104.objects.1.value", "false");
    FIELD(h, tx(h, 1), "iec104.objects.2.ioa", "3");
    FIELD(h, tx(h, 1), "iec104.objects.2.quality", "[\"invalid\"]");

    /* Termination: one-way. */
    send_i(h, SRV, 2, 1, BYTES(100, 0x01, 10, 0, 10, 0, 0, 0, 0, 20));
    FIELD(h, tx(h, 2), "status", "\"unsolicited\"");
    FIELD(h, tx(h, 2), "op_class", "\"interrogation\"");
    FIELD(h, tx(h, 2), "iec104.cot_name", "\"activation_termination\"");
    /* Counter interrogation, QCC request 5 freeze 1. */
    send_i(h, CLI, 1, 3, BYTES(101, 0x01, 6, 0, 10, 0, 0, 0, 0, 0x45));
    send_i(h, SRV, 3, 2, BYTES(101, 0x01, 7, 0, 10, 0, 0, 0, 0, 0x45));
    FIELD(h, tx(h, 3), "function_name", "\"C_CI_NA_1\"");
    FIELD(h, tx(h, 3), "iec104.objects.0.request", "5");
    FIELD(h, tx(h, 3), "iec104.objects.0.freeze", "1");
    check_clean(h);
}

static void
test_single_command_select_execute(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* C_SC_NA_1 select ON (SCO 0x81), CA 1, IOA 5000. */
    send_i(h, CLI, 0, 0, BYTES(45, 1, 6, 3, 1, 0, 0x88, 0x13, 0, 0x81));
    send_i(h, SRV, 0, 1, BYTES(45, 1, 7, 3, 1, 0, 0x88, 0x13, 0, 0x81));
    FIELD(h, tx(h, 0), "op_class", "\"control\"");
    FIELD(h, tx(h, 0), "function_name", "\"C_SC_NA_1\"");
    FIELD(h, tx(h, 0), "status", "\"ok\"");
    FIELD(h, tx(h, 0), "iec104.originator_address", "3");
    FIELD(h, tx(h, 0), "iec104.objects.0.ioa", "5000");
    FIELD(h, tx(h, 0), "iec104.objects.0.value", "true");
    FIELD(h, tx(h, 0), "iec104.objects.0.select", "true");
    FIELD(h, tx(h, 0), "iec104.objects.0.qualifier", "0");
    /* Execute. */
    send_i(h, CLI, 1, 1, BYTES(45, 1, 6, 3, 1, 0, 0x88, 0x13, 0, 0x01));
    send_i(h, SRV, 1, 2, BYTES(45, 1, 7, 3, 1, 0, 0x88, 0x13, 0, 0x01));
    FIELD(h, tx(h, 1), "iec104.objects.0.select", "false");
    FIELD(h, tx(h, 1), "status", "\"ok\"");
    /* Double command with time tag (C_DC_TA_1), off, short pulse (QU 1). */
    send_i(h, CLI, 2, 2,
           BYTES(59, 1, 6, 0, 1, 0, 1, 0, 0, 0x05, 0x10, 0x27, 0x1e, 0x0c, 0x0f, 0x03, 0x18));
    send_i(h, SRV, 2, 3,
           BYTES(59, 1, 7, 0, 1, 0, 1, 0, 0, 0x05, 0x10, 0x27, 0x1e, 0x0c, 0x0f, 0x03, 0x18));
    FIELD(h, tx(h, 2), "iec104.objects.0.value", "1");
    FIELD(h, tx(h, 2), "iec104.objects.0.qualifier", "1");
    FIELD(h, tx(h, 2), "iec104.objects.0.time", "\"2024-03-15T12:30:10.000\"");
    FIELD(h, tx(h, 2), "iec104.objects.0.time_invalid", "false");
    /* Regulating step up and set-points (normalised, scaled, float). */
    send_i(h, CLI, 3, 3, BYTES(47, 1, 6, 0, 1, 0, 2, 0, 0, 0x02));
    send_i(h, CLI, 4, 3, BYTES(48, 1, 6, 0, 1, 0, 3, 0, 0, 0x00, 0x40, 0x00));
    send_i(h, CLI, 5, 3, BYTES(49, 1, 6, 0, 1, 0, 4, 0, 0, 0x9c, 0xff, 0x80));
    send_i(h, CLI, 6, 3, BYTES(50, 1, 6, 0, 1, 0, 5, 0, 0, 0x00, 0x00, 0xc0, 0x3f, 0x00));
    send_i(h, SRV, 3, 7, BYTES(47, 1, 7, 0, 1, 0, 2, 0, 0, 0x02));
    send_i(h, SRV, 4, 7, BYTES(48, 1, 7, 0, 1, 0, 3, 0, 0, 0x00, 0x40, 0x00));
    send_i(h, SRV, 5, 7, BYTES(49, 1, 7, 0, 1, 0, 4, 0, 0, 0x9c, 0xff, 0x80));
    send_i(h, SRV, 6, 7, BYTES(50, 1, 7, 0, 1, 0, 5, 0, 0, 0x00, 0x00, 0xc0, 0x3f, 0x00));
    FIELD(h, tx(h, 3), "function_name", "\"C_RC_NA_1\"");
    FIELD(h, tx(h, 3), "iec104.objects.0.value", "2");
    FIELD(h, tx(h, 4), "iec104.objects.0.value", "0.5");
    FIELD(h, tx(h, 5), "iec104.objects.0.value", "-100");
    FIELD(h, tx(h, 5), "iec104.objects.0.select", "true");
    FIELD(h, tx(h, 6), "iec104.objects.0.value", "1.5");
    FIELD(h, tx(h, 6), "status", "\"ok\"");
    /* The control station is an asset. */
    CU_ASSERT_EQUAL(ots_harness_count(h, "asset"), 1);
    gint a = ots_harness_find(h, "asset", 0);
    FIELD(h, a, "role", "\"client\"");
    FIELD(h, a, "iec104.controlled_common_address", "1");
    check_clean(h);
}

static void
test_negative_confirmation(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_i(h, CLI, 0, 0, BYTES(46, 1, 6, 0, 1, 0, 9, 0, 0, 0x02));
    /* P/N set on the confirmation. */
    send_i(h, SRV, 0, 1, BYTES(46, 1, 0x47, 0, 1, 0, 9, 0, 0, 0x02));
    FIELD(h, tx(h, 0), "status", "\"exception\"");
    FIELD(h, tx(h, 0), "iec104.response.negative", "true");
    FIELD(h, tx(h, 0), "iec104.response.cot", "7");
    /* Unknown IOA (cause 47). */
    send_i(h, CLI, 1, 1, BYTES(45, 1, 6, 0, 1, 0, 8, 0, 0, 0x01));
    send_i(h, SRV, 1, 2, BYTES(45, 1, 0x40 | 47, 0, 1, 0, 8, 0, 0, 0x01));
    FIELD(h, tx(h, 1), "status", "\"exception\"");
    FIELD(h, tx(h, 1), "iec104.response.cot_name", "\"unknown_ioa\"");
    check_clean(h);
}

static void
test_clock_sync_reset_read(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* C_CS_NA_1 2023-11-14 22:13:20.500 */
    send_i(h, CLI, 0, 0, BYTES(103, 1, 6, 0, 7, 0, 0, 0, 0, 0x74, 0x52, 13, 22, 0x4e, 11, 23));
    send_i(h, SRV, 0, 1, BYTES(103, 1, 7, 0, 7, 0, 0, 0, 0, 0x74, 0x52, 13, 22, 0x4e, 11, 23));
    FIELD(h, tx(h, 0), "op_class", "\"time_set\"");
    FIELD(h, tx(h, 0), "function_name", "\"C_CS_NA_1\"");
    FIELD(h, tx(h, 0), "iec104.objects.0.time", "\"2023-11-14T22:13:21.108\"");
    /* C_RP_NA_1 general reset. */
    send_i(h, CLI, 1, 1, BYTES(105, 1, 6, 0, 7, 0, 0, 0, 0, 1));
    send_i(h, SRV, 1, 2, BYTES(105, 1, 7, 0, 7, 0, 0, 0, 0, 1));
    FIELD(h, tx(h, 1), "op_class", "\"restart\"");
    FIELD(h, tx(h, 1), "iec104.objects.0.qualifier", "1");
    /* C_RD_NA_1 read of IOA 700, answered with M_ME_NB_1 cause "request". */
    send_i(h, CLI, 2, 2, BYTES(102, 1, 5, 0, 7, 0, 0xbc, 0x02, 0));
    ots_harness_set_time(h, T0 + 900);
    send_i(h, SRV, 2, 3, BYTES(11, 1, 5, 0, 7, 0, 0xbc, 0x02, 0, 0x2c, 0x01, 0x00));
    FIELD(h, tx(h, 2), "op_class", "\"read\"");
    FIELD(h, tx(h, 2), "status", "\"ok\"");
    FIELD(h, tx(h, 2), "latency_us", "900");
    FIELD(h, tx(h, 2), "iec104.response.type_name", "\"M_ME_NB_1\"");
    FIELD(h, tx(h, 2), "iec104.response.objects.0.value", "300");
    check_clean(h);
}

/* ---- monitor direction ------------------------------------------------- */

static void
test_monitor_types(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* M_ME_NC_1, SQ=0, two objects; the second overflowed and invalid. */
    send_i(h, SRV, 0, 0,
           BYTES(13, 2, 3, 0, 10, 0, 1, 0, 0, 0x00, 0x00, 0x20, 0x41, 0x00, 2, 0, 0, 0x00, 0x00,
                 0x80, 0xbf, 0x81));
    FIELD(h, tx(h, 0), "status", "\"unsolicited\"");
    FIELD(h, tx(h, 0), "op_class", "\"monitor\"");
    FIELD(h, tx(h, 0), "function", "13");
    FIELD(h, tx(h, 0), "iec104.cot_name", "\"spontaneous\"");
    FIELD(h, tx(h, 0), "iec104.objects.0.value", "10");
    FIELD(h, tx(h, 0), "iec104.objects.1.ioa", "2");
    FIELD(h, tx(h, 0), "iec104.objects.1.value", "-1");
    FIELD(h, tx(h, 0), "iec104.objects.1.quality", "[\"overflow\",\"invalid\"]");
    /* M_DP_TB_1 with CP56Time2a, summer time. */
    send_i(h, SRV, 1, 0, BYTES(31, 1, 3, 0, 10, 0, 9, 0, 0, 0x02, 0xe8, 0x03, 5, 0x88, 1, 1, 24));
    FIELD(h, tx(h, 1), "iec104.objects.0.value", "2");
    FIELD(h, tx(h, 1), "iec104.objects.0.time", "\"2024-01-01T08:05:01.000\"");
    FIELD(h, tx(h, 1), "iec104.objects.0.summer_time", "true");
    /* M_IT_NA_1 counter with carry, M_ST_NA_1 step -3 transient,
     * M_BO_NA_1 bitstring, M_ME_NA_1 normalised, periodic. */
    send_i(h, SRV, 2, 0, BYTES(15, 1, 37, 0, 10, 0, 20, 0, 0, 0x10, 0x27, 0, 0, 0x23));
    FIELD(h, tx(h, 2), "op_class", "\"read\"");
    FIELD(h, tx(h, 2), "iec104.objects.0.value", "10000");
    FIELD(h, tx(h, 2), "iec104.objects.0.sequence", "3");
    FIELD(h, tx(h, 2), "iec104.objects.0.carry", "true");
    send_i(h, SRV, 3, 0, BYTES(5, 1, 3, 0, 10, 0, 21, 0, 0, 0xfd, 0x00));
    FIELD(h, tx(h, 3), "iec104.objects.0.value", "-3");
    FIELD(h, tx(h, 3), "iec104.objects.0.transient", "true");
    send_i(h, SRV, 4, 0, BYTES(7, 1, 3, 0, 10, 0, 22, 0, 0, 0x78, 0x56, 0x34, 0x12, 0x00));
    FIELD(h, tx(h, 4), "iec104.objects.0.value", "305419896");
    send_i(h, SRV, 5, 0, BYTES(9, 1, 1, 0, 10, 0, 23, 0, 0, 0x00, 0xc0, 0x10));
    FIELD(h, tx(h, 5), "iec104.objects.0.value", "-0.5");
    FIELD(h, tx(h, 5), "iec104.objects.0.quality", "[\"blocked\"]");
    FIELD(h, tx(h, 5), "iec104.cot_name", "\"periodic\"");
    /* One controlled-station asset for common address 10. */
    CU_ASSERT_EQUAL(ots_harness_count(h, "asset"), 1);
    gint a = ots_harness_find(h, "asset", 0);
    FIELD(h, a, "role", "\"controller\"");
    FIELD(h, a, "port", "2404");
    FIELD(h, a, "iec104.common_address", "10");
    /* End of initialisation: always an asset fact. */
    send_i(h, SRV, 6, 0, BYTES(70, 1, 4, 0, 10, 0, 0, 0, 0, 0x02));
    CU_ASSERT_EQUAL(ots_harness_count(h, "asset"), 2);
    FIELD(h, ots_harness_find(h, "asset", 1), "iec104.end_of_initialization_cause", "2");
    FIELD(h, tx(h, 6), "iec104.cot_name", "\"initialized\"");
    check_clean(h);
}

static void
test_file_transfer(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* F_SC_NA_1 call file 3, then F_FR_NA_1 file ready, F_SG_NA_1 segment. */
    send_i(h, CLI, 0, 0, BYTES(122, 1, 13, 0, 1, 0, 1, 0, 0, 3, 0, 0, 2));
    send_i(h, SRV, 0, 1, BYTES(120, 1, 13, 0, 1, 0, 1, 0, 0, 3, 0, 0x00, 0x10, 0x00, 0));
    send_i(h, SRV, 1, 1, BYTES(125, 1, 13, 0, 1, 0, 1, 0, 0, 3, 0, 1, 3, 0xaa, 0xbb, 0xcc));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
    FIELD(h, tx(h, 0), "op_class", "\"file_transfer\"");
    FIELD(h, tx(h, 0), "function_name", "\"F_SC_NA_1\"");
    FIELD(h, tx(h, 0), "iec104.objects.0.file_name", "3");
    FIELD(h, tx(h, 1), "iec104.objects.0.file_length", "4096");
    FIELD(h, tx(h, 2), "iec104.objects.0.segment_length", "3");
    FIELD(h, tx(h, 2), "iec104.objects.0.section", "1");
    check_clean(h);
}

/* ---- framing ----------------------------------------------------------- */

static void
test_several_apdus_one_feed(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint8 buf[64];
    gsize n = 0;
    memcpy(buf, startdt_act, 6);
    n += 6;
    n += iframe(buf + n, 0, 0, BYTES(100, 1, 6, 0, 1, 0, 0, 0, 0, 20));
    memcpy(buf + n, testfr_act, 6);
    n += 6;
    CU_ASSERT_EQUAL(ots_harness_feed(h, CLI, buf, n), OTS_PARSE_OK);
    n = 0;
    memcpy(buf, testfr_con, 6);
    n += 6;
    n += iframe(buf + n, 0, 1, BYTES(100, 1, 7, 0, 1, 0, 0, 0, 0, 20));
    memcpy(buf + n, startdt_con, 6);
    n += 6;
    CU_ASSERT_EQUAL(ots_harness_feed(h, SRV, buf, n), OTS_PARSE_OK);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
    FIELD(h, tx(h, 0), "function_name", "\"testfr\"");
    FIELD(h, tx(h, 1), "function_name", "\"C_IC_NA_1\"");
    FIELD(h, tx(h, 2), "function_name", "\"startdt\"");
    check_clean(h);
}

static void
test_split_byte_by_byte(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint8 buf[64];
    gsize n = iframe(buf, 0, 0, BYTES(13, 1, 3, 0, 10, 0, 1, 0, 0, 0, 0, 0x20, 0x41, 0));
    for (gsize k = 0; k + 1 < n; k++)
        CU_ASSERT_EQUAL(ots_harness_feed(h, SRV, buf + k, 1), OTS_PARSE_NEED_MORE);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    CU_ASSERT_EQUAL(ots_harness_feed(h, SRV, buf + n - 1, 1), OTS_PARSE_OK);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    FIELD(h, tx(h, 0), "iec104.objects.0.value", "10");
    check_clean(h);
}

static void
test_split_across_apdus(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint8 buf[64];
    gsize n = 0;
    for (guint k = 0; k < 3; k++)
        n += iframe(buf + n, (guint16)k, 0, BYTES(1, 1, 3, 0, 10, 0, 1, 0, 0, 1));
    /* 16 bytes per APDU: cut at 10 and 37. */
    CU_ASSERT_EQUAL(ots_harness_feed(h, SRV, buf, 10), OTS_PARSE_NEED_MORE);
    CU_ASSERT_EQUAL(ots_harness_feed(h, SRV, buf + 10, 27), OTS_PARSE_NEED_MORE);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    CU_ASSERT_EQUAL(ots_harness_feed(h, SRV, buf + 37, n - 37), OTS_PARSE_OK);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
    FIELD(h, tx(h, 2), "iec104.send_seq", "2");
    check_clean(h);
}

static void
test_gap_resync(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_i(h, SRV, 0, 0, BYTES(1, 1, 3, 0, 10, 0, 1, 0, 0, 1));
    ots_harness_gap(h, SRV, 100);
    /* The stream resumes inside an APDU: the tail of one, then whole ones
     * (whose N(S) jumped: after a gap that is not an anomaly). */
    guint8 buf[64];
    gsize n = 0;
    static const guint8 tail[] = {0x00, 0x00, 0x01, 0x68};
    memcpy(buf, tail, sizeof(tail));
    n += sizeof(tail);
    n += iframe(buf + n, 40, 0, BYTES(1, 1, 3, 0, 10, 0, 2, 0, 0, 1));
    n += iframe(buf + n, 41, 0, BYTES(1, 1, 3, 0, 10, 0, 3, 0, 0, 0));
    CU_ASSERT_EQUAL(ots_harness_feed(h, SRV, buf, n), OTS_PARSE_OK);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
    FIELD(h, tx(h, 1), "iec104.send_seq", "40");
    FIELD(h, tx(h, 2), "iec104.objects.0.ioa", "3");
    check_clean(h);
}

static void
test_bad_framing(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* Bad start octet: one alert, then resync on the next APDU. */
    guint8 buf[64] = {0x55, 0x04, 0x07, 0, 0, 0};
    memcpy(buf + 6, startdt_act, 6);
    ots_harness_feed(h, CLI, buf, 12);
    CU_ASSERT_EQUAL(alerts(h, "bad_start_byte"), 1);
    ots_harness_feed(h, SRV, startdt_con, 6);
    FIELD(h, tx(h, 0), "function_name", "\"startdt\"");
    FIELD(h, tx(h, 0), "status", "\"ok\"");
    /* Length outside 4..253. */
    ots_harness_feed(h, CLI, BYTES(0x68, 0x02, 0x01, 0x00, 0x68, 4, 0x43, 0, 0, 0));
    CU_ASSERT_EQUAL(alerts(h, "bad_length"), 1);
    ots_harness_feed(h, SRV, testfr_con, 6);
    FIELD(h, tx(h, 1), "function_name", "\"testfr\"");
    FIELD(h, tx(h, 1), "status", "\"ok\"");
    gint a = ots_harness_find(h, "alert", 0);
    FIELD(h, a, "category", "\"protocol_anomaly\"");
    /* Two U functions at once; S frame with reserved bits; U with length 5. */
    ots_harness_feed(h, CLI, BYTES(0x68, 4, 0x0f, 0, 0, 0));
    CU_ASSERT_EQUAL(alerts(h, "bad_u_function"), 1);
    FIELD(h, tx(h, 2), "function_name", "\"unknown\"");
    FIELD(h, tx(h, 2), "status", "\"no_response\"");
    ots_harness_feed(h, CLI, BYTES(0x68, 4, 0x01, 0x02, 0, 0));
    CU_ASSERT_EQUAL(alerts(h, "bad_control_field"), 1);
    ots_harness_feed(h, CLI, BYTES(0x68, 5, 0x43, 0, 0, 0, 0));
    CU_ASSERT_EQUAL(alerts(h, "bad_length"), 2);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_sequence_numbers(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_i(h, SRV, 0, 0, BYTES(1, 1, 3, 0, 10, 0, 1, 0, 0, 1));
    send_i(h, SRV, 1, 0, BYTES(1, 1, 3, 0, 10, 0, 1, 0, 0, 1));
    send_s(h, CLI, 2);
    CU_ASSERT_EQUAL(ots_harness_count(h, "alert"), 0);
    /* 2 -> 5: two I-frames missing. */
    send_i(h, SRV, 5, 0, BYTES(1, 1, 3, 0, 10, 0, 1, 0, 0, 1));
    CU_ASSERT_EQUAL(alerts(h, "sequence_gap"), 1);
    /* 6 expected, 3 sent again. */
    send_i(h, SRV, 3, 0, BYTES(1, 1, 3, 0, 10, 0, 1, 0, 0, 1));
    CU_ASSERT_EQUAL(alerts(h, "sequence_out_of_order"), 1);
    /* Acknowledges 10 frames while the next is 4. */
    send_s(h, CLI, 10);
    CU_ASSERT_EQUAL(alerts(h, "bad_ack"), 1);
    /* Goes back. */
    send_s(h, CLI, 1);
    CU_ASSERT_EQUAL(alerts(h, "bad_ack"), 2);
    /* Wrap-around at 32767 is in order. */
    g_autoptr(OtsHarness) w = harness();
    send_i(w, SRV, 32767, 0, BYTES(1, 1, 3, 0, 10, 0, 1, 0, 0, 1));
    send_i(w, SRV, 0, 0, BYTES(1, 1, 3, 0, 10, 0, 1, 0, 0, 1));
    send_s(w, CLI, 1);
    FIELD(w, tx(w, 0), "iec104.send_seq", "32767");
    check_clean(w);
}

static void
test_bad_asdu(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* Two objects announced, one present. */
    send_i(h, SRV, 0, 0, BYTES(1, 2, 3, 0, 10, 0, 1, 0, 0, 1));
    CU_ASSERT_EQUAL(alerts(h, "bad_asdu_length"), 1);
    FIELD(h, tx(h, 0), "iec104.objects.0.ioa", "1");
    /* Unknown type id: objects as hex. */
    send_i(h, SRV, 1, 0, BYTES(99, 1, 3, 0, 10, 0, 1, 0, 0, 0xde, 0xad));
    CU_ASSERT_EQUAL(alerts(h, "unknown_type_id"), 1);
    FIELD(h, tx(h, 1), "function_name", "\"unknown\"");
    FIELD(h, tx(h, 1), "iec104.data", "\"010000dead\"");
    /* Undefined cause 14; zero objects. */
    send_i(h, SRV, 2, 0, BYTES(1, 1, 14, 0, 10, 0, 1, 0, 0, 1));
    CU_ASSERT_EQUAL(alerts(h, "bad_cot"), 1);
    send_i(h, SRV, 3, 0, BYTES(1, 0, 3, 0, 10, 0));
    CU_ASSERT_EQUAL(alerts(h, "no_objects"), 1);
    /* I-frame too short for an ASDU header. */
    send_i(h, SRV, 4, 0, BYTES(1, 1, 3));
    CU_ASSERT_EQUAL(alerts(h, "asdu_too_short"), 1);
    FIELD(h, tx(h, 4), "function", "0");
    /* Time tag with minute 61; DCO state 0. */
    send_i(h, SRV, 5, 0, BYTES(30, 1, 3, 0, 10, 0, 1, 0, 0, 1, 0, 0, 61, 1, 1, 1, 24));
    CU_ASSERT_EQUAL(alerts(h, "bad_time"), 1);
    send_i(h, CLI, 0, 6, BYTES(46, 1, 6, 0, 10, 0, 1, 0, 0, 0x00));
    CU_ASSERT_EQUAL(alerts(h, "bad_value"), 1);
    /* Causes past the table (found by fuzzing). */
    g_autoptr(OtsHarness) c = harness();
    send_i(c, SRV, 0, 0, BYTES(1, 1, 0x3f, 0, 10, 0, 1, 0, 0, 1));
    CU_ASSERT_EQUAL(alerts(c, "bad_cot"), 1);
    FIELD(c, tx(c, 0), "iec104.cot", "63");
    FIELD(c, tx(c, 0), "iec104.cot_name", "\"unknown\"");
    /* Every APDU is in exactly one event. */
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 7);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

/* ---- pairing ----------------------------------------------------------- */

static void
test_response_without_request(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_i(h, SRV, 0, 0, BYTES(45, 1, 7, 0, 1, 0, 1, 0, 0, 0x01));
    CU_ASSERT_EQUAL(alerts(h, "response_without_request"), 1);
    FIELD(h, tx(h, 0), "status", "\"no_request\"");
    FIELD(h, tx(h, 0), "function", "45");
    FIELD(h, tx(h, 0), "src_port", "40000");
    ABSENT(h, tx(h, 0), "iec104.apci_type");
    FIELD(h, tx(h, 0), "iec104.response.cot", "7");
    ots_harness_feed(h, SRV, startdt_con, 6);
    CU_ASSERT_EQUAL(alerts(h, "response_without_request"), 2);
    FIELD(h, tx(h, 1), "status", "\"no_request\"");
    FIELD(h, tx(h, 1), "function", "7");
    FIELD(h, tx(h, 1), "iec104.response.u_function", "\"startdt_con\"");
    /* A confirmation for another IOA does not pair. */
    send_i(h, CLI, 0, 1, BYTES(45, 1, 6, 0, 1, 0, 1, 0, 0, 0x01));
    send_i(h, SRV, 1, 1, BYTES(45, 1, 7, 0, 1, 0, 2, 0, 0, 0x01));
    CU_ASSERT_EQUAL(alerts(h, "response_without_request"), 3);
}

static void
test_unanswered_at_end(void)
{
    g_autoptr(OtsHarness) h = harness();
    ots_harness_feed(h, CLI, startdt_act, 6);
    send_i(h, CLI, 0, 0, BYTES(100, 1, 6, 0, 1, 0, 0, 0, 0, 20));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    FIELD(h, tx(h, 0), "status", "\"unanswered\"");
    FIELD(h, tx(h, 0), "function_name", "\"C_IC_NA_1\"");
    FIELD(h, tx(h, 1), "status", "\"unanswered\"");
    FIELD(h, tx(h, 1), "function_name", "\"startdt\"");
    ABSENT(h, tx(h, 1), "latency_us");
    check_clean(h);
}

static void
test_unanswered_timeout(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_i(h, CLI, 0, 0, BYTES(45, 1, 6, 0, 1, 0, 1, 0, 0, 0x01));
    ots_harness_feed(h, CLI, testfr_act, 6);
    ots_harness_set_time(h, T0 + 10 * G_USEC_PER_SEC);
    send_i(h, CLI, 1, 0, BYTES(45, 1, 6, 0, 1, 0, 2, 0, 0, 0x01));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    ots_harness_set_time(h, T0 + 31 * G_USEC_PER_SEC);
    send_s(h, SRV, 2);
    /* The S frame is an event; then time passing expires the first
     * command and the TESTFR, not the younger command. */
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
    FIELD(h, tx(h, 0), "function_name", "\"s_frame\"");
    FIELD(h, tx(h, 1), "status", "\"unanswered\"");
    FIELD(h, tx(h, 1), "iec104.objects.0.ioa", "1");
    FIELD(h, tx(h, 2), "status", "\"unanswered\"");
    FIELD(h, tx(h, 2), "function_name", "\"testfr\"");
    send_i(h, SRV, 0, 2, BYTES(45, 1, 7, 0, 1, 0, 2, 0, 0, 0x01));
    FIELD(h, tx(h, 3), "status", "\"ok\"");
    FIELD(h, tx(h, 3), "latency_us", "21000000");
    check_clean(h);
}

static void
test_pending_bounded(void)
{
    g_autoptr(OtsHarness) h = harness();
    for (guint k = 0; k < 256; k++)
        send_i(h, CLI, (guint16)k, 0, BYTES(45, 1, 6, 0, 1, 0, (guint8)k, 1, 0, 0x01));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    send_i(h, CLI, 256, 0, BYTES(45, 1, 6, 0, 1, 0, 0, 2, 0, 0x01));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    FIELD(h, tx(h, 0), "status", "\"unanswered\"");
    FIELD(h, tx(h, 0), "iec104.objects.0.ioa", "256");
    /* A repeated command waits beside the first; confirmations pair
     * oldest first. */
    send_i(h, CLI, 257, 0, BYTES(45, 1, 6, 0, 1, 0, 0, 2, 0, 0x01));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    send_i(h, SRV, 0, 258, BYTES(45, 1, 7, 0, 1, 0, 0, 2, 0, 0x01));
    send_i(h, SRV, 1, 258, BYTES(45, 1, 7, 0, 1, 0, 0, 2, 0, 0x01));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 4);
    FIELD(h, tx(h, 2), "status", "\"ok\"");
    FIELD(h, tx(h, 2), "iec104.send_seq", "256");
    FIELD(h, tx(h, 3), "status", "\"ok\"");
    FIELD(h, tx(h, 3), "iec104.send_seq", "257");
    FIELD(h, tx(h, 3), "iec104.response.send_seq", "1");
    check_clean(h);
}

/* ---- memory budget (flows.memcap_mb) ------------------------------------ */

/* A single command activation (C_SC_NA_1, CA 1) for IOA @ioa, and its
 * confirmation. */
#define SC_ACT(ioa) BYTES(45, 1, 6, 0, 1, 0, (guint8)(ioa), (guint8)((ioa) >> 8), 0, 0x01)
#define SC_CON(ioa) BYTES(45, 1, 7, 0, 1, 0, (guint8)(ioa), (guint8)((ioa) >> 8), 0, 0x01)

/* What one pending single command is charged (no budget set: charges are
 * still counted). */
static gsize
command_cost(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_i(h, CLI, 0, 0, SC_ACT(1));
    return ots_harness_mem_used(h);
}

static void
test_memcap_balanced(void)
{
    g_autoptr(OtsHarness) h = harness();
    ots_harness_set_memcap(h, 1024 * 1024);
    gsize base = ots_harness_mem_used(h);
    gsize cost = command_cost();
    guint16 ns_c = 0, ns_s = 0;
    CU_ASSERT(cost > 16);

    /* Each activation is charged until its confirmation frees it. */
    send_i(h, CLI, ns_c++, ns_s, SC_ACT(1));
    send_i(h, CLI, ns_c++, ns_s, SC_ACT(2));
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base + 2 * cost);
    send_i(h, SRV, ns_s++, ns_c, SC_CON(2));
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base + cost);
    /* A negative confirmation frees it too. */
    send_i(h, SRV, ns_s++, ns_c, BYTES(45, 1, 0x47, 0, 1, 0, 1, 0, 0, 0x01));
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);
    /* A read, answered by the object itself. */
    send_i(h, CLI, ns_c++, ns_s, BYTES(102, 1, 5, 0, 1, 0, 9, 0, 0));
    CU_ASSERT(ots_harness_mem_used(h) > base);
    send_i(h, SRV, ns_s++, ns_c, BYTES(1, 1, 5, 0, 1, 0, 9, 0, 0, 0x01));
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);
    /* Process data and a confirmation without activation keep nothing. */
    send_i(h, SRV, ns_s++, ns_c, BYTES(1, 1, 3, 0, 1, 0, 9, 0, 0, 0x00));
    send_i(h, SRV, ns_s++, ns_c, SC_CON(7));
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 5);
    /* U frames wait in fixed per-flow slots: nothing is charged. */
    ots_harness_feed(h, CLI, testfr_act, 6);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);
    ots_harness_feed(h, SRV, testfr_con, 6);

    /* Unconfirmed activations expire after 30 s. */
    send_i(h, CLI, ns_c++, ns_s, SC_ACT(3));
    send_i(h, CLI, ns_c++, ns_s, SC_ACT(4));
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base + 2 * cost);
    ots_harness_tick(h, T0 + 40 * G_USEC_PER_SEC);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 8);
    FIELD(h, tx(h, 7), "status", "\"unanswered\"");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);

    /* A full table lets the oldest go, and its charge with it. */
    for (guint k = 0; k < 256; k++)
        send_i(h, CLI, ns_c++, ns_s, SC_ACT(100 + k));
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base + 256 * cost);
    send_i(h, CLI, ns_c++, ns_s, SC_ACT(1000));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 9);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base + 256 * cost);

    /* Flow end reports the rest and refunds it. */
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 9 + 256);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);
    CU_ASSERT_EQUAL(ots_harness_memcap_refused(h), 0);
    CU_ASSERT_EQUAL(alerts(h, "response_without_request"), 1);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_memcap_refused(void)
{
    gsize cost = command_cost();

    /* No room for any activation: each is reported at once, unanswered. */
    {
        g_autoptr(OtsHarness) h = harness();
        ots_harness_set_memcap(h, 16);
        send_i(h, CLI, 0, 0, SC_ACT(5));
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
        gint i = tx(h, 0);
        FIELD(h, i, "status", "\"unanswered\"");
        FIELD(h, i, "function_name", "\"C_SC_NA_1\"");
        FIELD(h, i, "op_class", "\"control\"");
        FIELD(h, i, "iec104.objects.0.ioa", "5");
        ABSENT(h, i, "latency_us");
        /* The sender of commands is still reported as an asset. */
        CU_ASSERT_EQUAL(ots_harness_count(h, "asset"), 1);
        send_i(h, CLI, 1, 0, BYTES(100, 1, 6, 0, 1, 0, 0, 0, 0, 20));
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
        FIELD(h, tx(h, 1), "status", "\"unanswered\"");
        FIELD(h, tx(h, 1), "function_name", "\"C_IC_NA_1\"");
        CU_ASSERT_EQUAL(ots_harness_memcap_refused(h), 2 * cost);
        CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
        /* Its confirmation finds nothing to pair with. */
        send_i(h, SRV, 0, 2, SC_CON(5));
        FIELD(h, tx(h, 2), "status", "\"no_request\"");
        ots_harness_end(h);
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
        CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
    }

    /* Room for two: the oldest goes, as when the table is full. */
    {
        g_autoptr(OtsHarness) h = harness();
        ots_harness_set_memcap(h, 2 * cost + cost / 2);
        send_i(h, CLI, 0, 0, SC_ACT(1));
        send_i(h, CLI, 1, 0, SC_ACT(2));
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
        CU_ASSERT_EQUAL(ots_harness_memcap_refused(h), 0);
        send_i(h, CLI, 2, 0, SC_ACT(3));
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
        FIELD(h, tx(h, 0), "status", "\"unanswered\"");
        FIELD(h, tx(h, 0), "iec104.objects.0.ioa", "1");
        CU_ASSERT_EQUAL(ots_harness_memcap_refused(h), cost);
        CU_ASSERT_EQUAL(ots_harness_mem_used(h), 2 * cost);
        send_i(h, SRV, 0, 3, SC_CON(3));
        send_i(h, SRV, 1, 3, SC_CON(2));
        FIELD(h, tx(h, 1), "status", "\"ok\"");
        FIELD(h, tx(h, 1), "iec104.objects.0.ioa", "3");
        FIELD(h, tx(h, 2), "status", "\"ok\"");
        FIELD(h, tx(h, 2), "iec104.objects.0.ioa", "2");
        CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
        ots_harness_end(h);
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
        check_clean(h);
    }

    /* An activation larger than what the oldest frees: both are reported. */
    {
        g_autoptr(OtsHarness) h = harness();
        ots_harness_set_memcap(h, cost + 8);
        /* C_SE_NC_1, 24 float set-points with IOAs 1..24. */
        guint8 big[6 + 24 * 8] = {50, 24, 6, 0, 1, 0};
        for (guint k = 0; k < 24; k++)
            big[6 + 8 * k] = (guint8)(k + 1);
        send_i(h, CLI, 0, 0, SC_ACT(1));
        CU_ASSERT_EQUAL(ots_harness_mem_used(h), cost);
        send_i(h, CLI, 1, 0, big, sizeof(big));
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
        FIELD(h, tx(h, 0), "status", "\"unanswered\"");
        FIELD(h, tx(h, 0), "function_name", "\"C_SC_NA_1\"");
        FIELD(h, tx(h, 1), "status", "\"unanswered\"");
        FIELD(h, tx(h, 1), "function_name", "\"C_SE_NC_1\"");
        FIELD(h, tx(h, 1), "iec104.num_objects", "24");
        CU_ASSERT(ots_harness_memcap_refused(h) > 2 * cost);
        CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
        /* Small activations fit again. */
        send_i(h, CLI, 2, 0, SC_ACT(9));
        CU_ASSERT_EQUAL(ots_harness_mem_used(h), cost);
        send_i(h, SRV, 0, 3, SC_CON(9));
        FIELD(h, tx(h, 2), "status", "\"ok\"");
        CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
        ots_harness_end(h);
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
        check_clean(h);
    }
}

/* Activations, confirmations and expiry under budgets from none to a few. */
static void
test_memcap_random(void)
{
    g_autoptr(GRand) rnd = g_rand_new_with_seed(0x6d656d63);
    for (guint round = 0; round < 100; round++) {
        g_autoptr(OtsHarness) h = harness();
        ots_harness_set_memcap(h, (gsize)g_rand_int_range(rnd, 1, 400));
        guint16 ns[2] = {0, 0};
        for (guint k = 0; k < 60; k++) {
            guint ioa = (guint)g_rand_int_range(rnd, 0, 8);
            ots_harness_set_time(h, T0 + (gint64)k * 3 * G_USEC_PER_SEC);
            OtsDirection d = g_rand_boolean(rnd) ? CLI : SRV;
            guint16 nr = ns[OTS_DIR_REVERSE(d)];
            if (d == CLI)
                send_i(h, d, ns[d]++, nr, SC_ACT(ioa));
            else
                send_i(h, d, ns[d]++, nr, SC_CON(ioa));
        }
        ots_harness_end(h);
        CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
        CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
    }
}

static void
test_random_garbage(void)
{
    g_autoptr(GRand) rnd = g_rand_new_with_seed(0x31303421);
    for (guint round = 0; round < 200; round++) {
        g_autoptr(OtsHarness) h = harness();
        for (guint k = 0; k < 40; k++) {
            guint8 buf[512];
            gsize n = (gsize)g_rand_int_range(rnd, 1, sizeof(buf));
            for (gsize j = 0; j < n; j++)
                buf[j] = (guint8)g_rand_int(rnd);
            /* Bias towards IEC 104 headers so deep paths get exercised. */
            if (n >= 12 && g_rand_boolean(rnd)) {
                buf[0] = 0x68;
                buf[1] = (guint8)MIN(n - 2, (gsize)g_rand_int_range(rnd, 4, 254));
                buf[2] &= 0xfe;
                buf[4] &= 0xfe;
                buf[6] = (guint8)g_rand_int_range(rnd, 0, 128);
                buf[8] = (guint8)g_rand_int_range(rnd, 0, 48);
            }
            OtsDirection dir = g_rand_boolean(rnd) ? CLI : SRV;
            ots_harness_set_time(h, T0 + (gint64)k * 2 * G_USEC_PER_SEC);
            ots_harness_feed(h, dir, buf, n);
            if (g_rand_int_range(rnd, 0, 10) == 0)
                ots_harness_gap(h, dir, (guint32)g_rand_int_range(rnd, 0, 100));
        }
        ots_harness_end(h);
        CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
    }
}

static CU_TestInfo iec104_tests[] = {
    {"descriptor", test_descriptor},
    {"probe", test_probe},
    {"U frames: STARTDT, TESTFR, STOPDT act/con", test_u_frames},
    {"S frame", test_s_frame},
    {"interrogation and counter interrogation", test_interrogation},
    {"commands: select/execute, double, regulating, set-points",
     test_single_command_select_execute},
    {"negative confirmation", test_negative_confirmation},
    {"clock sync, reset process, read", test_clock_sync_reset_read},
    {"monitor types, quality, time tags, assets", test_monitor_types},
    {"file transfer", test_file_transfer},
    {"several APDUs in one feed", test_several_apdus_one_feed},
    {"APDU split byte by byte", test_split_byte_by_byte},
    {"APDUs split across feeds", test_split_across_apdus},
    {"gap and resync", test_gap_resync},
    {"bad framing and control fields", test_bad_framing},
    {"sequence gaps, out of order, bad acks", test_sequence_numbers},
    {"bad ASDUs", test_bad_asdu},
    {"response without request", test_response_without_request},
    {"unanswered at flow end", test_unanswered_at_end},
    {"unanswered after 30 s", test_unanswered_timeout},
    {"pending requests bounded", test_pending_bounded},
    {"memcap: charges refunded on confirmation, expiry, eviction, end", test_memcap_balanced},
    {"memcap: activations past the budget reported at once", test_memcap_refused},
    {"memcap: random activations under tiny budgets", test_memcap_random},
    {"random garbage never crashes", test_random_garbage},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES                                                                            \
    {                                                                                              \
        "iec104", NULL, NULL, NULL, NULL, iec104_tests                                             \
    }
#include "cunit-main.h"
