/* SPDX-License-Identifier: Apache-2.0 */

/* S7comm dissector tests: TPKT/COTP/S7 byte arrays (most taken from the
 * corpus captures snap7.pcap, s7ident.pcap and s7comm_plus.pcap, some
 * hand-built and malformed) fed through the dissector harness exactly as the
 * pipeline feeds reassembled TCP; events checked field by field. */

#include <stdio.h>
#include <CUnit/CUnit.h>
#include <otsensor/dissector.h>
#include "core/dissect/harness.h"
#include "dissector-test.h"

const OtsPluginHeader *ots_plugin_get_info(void);

#define REQ OTS_DIR_TO_SERVER
#define RSP OTS_DIR_TO_CLIENT
#define T0 ((gint64)1700000000 * G_USEC_PER_SEC)

#define PDU(...) (const guint8[]){__VA_ARGS__}, sizeof((const guint8[]){__VA_ARGS__})

static const OtsDissectorInfo *
s7(void)
{
    return (const OtsDissectorInfo *)ots_plugin_get_info();
}

static OtsHarness *
harness(void)
{
    OtsHarness *h = ots_harness_new(s7(), OTS_L4_TCP, 102);
    ots_harness_set_time(h, T0);
    return h;
}

/* Wraps @msg in TPKT + COTP DT (EOT) into @out; returns the length. */
static gsize
wrap(guint8 *out, const guint8 *msg, gsize n)
{
    gsize len = n + 7;
    out[0] = 3;
    out[1] = 0;
    out[2] = (guint8)(len >> 8);
    out[3] = (guint8)(len & 0xff);
    out[4] = 2;
    out[5] = 0xf0;
    out[6] = 0x80;
    memcpy(out + 7, msg, n);
    return len;
}

static OtsParseResult
send(OtsHarness *h, OtsDirection dir, const guint8 *msg, gsize n)
{
    guint8 buf[1200];
    g_assert(n + 7 <= sizeof(buf));
    return ots_harness_feed(h, dir, buf, wrap(buf, msg, n));
}

static gint
tx(OtsHarness *h, guint nth)
{
    return ots_harness_find(h, "transaction", nth);
}

/* Frames from the corpus (S7 PDU only, after COTP DT). */
static const guint8 setup_req[] = {0x32, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00,
                                   0x00, 0xf0, 0x00, 0x00, 0x01, 0x00, 0x01, 0x01, 0xe0};
static const guint8 setup_rsp[] = {0x32, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00,
                                   0x00, 0x00, 0xf0, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0xf0};
/* snap7.pcap frame 49: write var, 1 item, M0.0 (flags) 4 bytes. */
static const guint8 write_req[] = {0x32, 0x01, 0x00, 0x00, 0x18, 0x00, 0x00, 0x0e, 0x00, 0x08, 0x05,
                                   0x01, 0x12, 0x0a, 0x10, 0x08, 0x00, 0x01, 0x00, 0x00, 0x83, 0x00,
                                   0x00, 0x80, 0x00, 0x07, 0x00, 0x04, 0x79, 0xe9, 0xf6, 0x42};
/* snap7.pcap frame 50 */
static const guint8 write_rsp[] = {0x32, 0x03, 0x00, 0x00, 0x18, 0x00, 0x00, 0x02,
                                   0x00, 0x01, 0x00, 0x00, 0x05, 0x01, 0xff};

/* ---- descriptor and probe ---------------------------------------------- */

static void
test_descriptor(void)
{
    const OtsDissectorInfo *info = s7();
    CU_ASSERT_EQUAL(info->abi_major, OTS_DISSECTOR_ABI_MAJOR);
    CU_ASSERT_EQUAL(info->kind, OTS_PLUGIN_KIND_DISSECTOR);
    CU_ASSERT_STRING_EQUAL(info->name, "s7comm");
    CU_ASSERT_EQUAL(info->tcp_ports[0], 102);
    CU_ASSERT_EQUAL(info->tcp_ports[1], 0);
    CU_ASSERT_PTR_NOT_NULL(info->gap);
    CU_ASSERT_PTR_NOT_NULL(info->flow_end);
    CU_ASSERT_PTR_NOT_NULL(info->tick);
}

static void
test_probe(void)
{
    guint8 buf[64];
    gsize n = wrap(buf, setup_req, sizeof(setup_req));
    OtsReader r = OTS_READER_INIT(buf, n);
    CU_ASSERT_EQUAL(s7()->probe(&r, REQ, OTS_L4_TCP), OTS_PROBE_YES);
    OtsReader part = OTS_READER_INIT(buf, 3);
    CU_ASSERT_EQUAL(s7()->probe(&part, REQ, OTS_L4_TCP), OTS_PROBE_NEED_MORE);
    OtsReader udp = OTS_READER_INIT(buf, n);
    CU_ASSERT_EQUAL(s7()->probe(&udp, REQ, OTS_L4_UDP), OTS_PROBE_NO);
    static const guint8 http[] = "GET / HTTP/1.1\r\n";
    OtsReader h = OTS_READER_INIT(http, sizeof(http) - 1);
    CU_ASSERT_EQUAL(s7()->probe(&h, REQ, OTS_L4_TCP), OTS_PROBE_NO);
    /* TPKT with a COTP DT carrying something that is not S7. */
    buf[7] = 0x99;
    OtsReader other = OTS_READER_INIT(buf, n);
    CU_ASSERT_EQUAL(s7()->probe(&other, REQ, OTS_L4_TCP), OTS_PROBE_NO);
}

/* ---- COTP -------------------------------------------------------------- */

static void
test_cotp_connect(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* s7ident.pcap frames 4 and 6: CR/CC, TSAPs 0x0100 / 0x0101 (rack 0, slot 1). */
    ots_harness_feed(h, REQ,
                     PDU(0x03, 0x00, 0x00, 0x16, 0x11, 0xe0, 0x00, 0x00, 0x00, 0x01, 0x00, 0xc0,
                         0x01, 0x0a, 0xc1, 0x02, 0x01, 0x00, 0xc2, 0x02, 0x01, 0x01));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    ots_harness_set_time(h, T0 + 250);
    ots_harness_feed(h, RSP,
                     PDU(0x03, 0x00, 0x00, 0x16, 0x11, 0xd0, 0x00, 0x01, 0x00, 0x01, 0x00, 0xc0,
                         0x01, 0x0a, 0xc1, 0x02, 0x01, 0x00, 0xc2, 0x02, 0x01, 0x01));
    gint i = tx(h, 0);
    FIELD(h, i, "proto", "\"s7comm\"");
    FIELD(h, i, "function", "224");
    FIELD(h, i, "function_name", "\"cotp_connect\"");
    FIELD(h, i, "op_class", "\"session\"");
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "latency_us", "250");
    FIELD(h, i, "s7comm.request.cotp_type", "\"CR\"");
    FIELD(h, i, "s7comm.response.cotp_type", "\"CC\"");
    FIELD(h, i, "s7comm.request.src_tsap", "\"0100\"");
    FIELD(h, i, "s7comm.request.dst_tsap", "\"0101\"");
    FIELD(h, i, "s7comm.request.tpdu_size", "1024");
    FIELD(h, i, "s7comm.response.src_ref", "1");
    FIELD(h, i, "s7comm.rack", "0");
    FIELD(h, i, "s7comm.slot", "1");
    check_clean(h);
}

static void
test_cotp_disconnect_and_errors(void)
{
    g_autoptr(OtsHarness) h = harness();
    ots_harness_feed(h, REQ, PDU(0x03, 0x00, 0x00, 0x0b, 0x06, 0x80, 0x00, 0x01, 0x00, 0x02, 0x80));
    ots_harness_feed(h, RSP, PDU(0x03, 0x00, 0x00, 0x0b, 0x06, 0xc0, 0x00, 0x02, 0x00, 0x01, 0x00));
    gint i = tx(h, 0);
    FIELD(h, i, "function_name", "\"cotp_disconnect\"");
    FIELD(h, i, "s7comm.request.cotp_type", "\"DR\"");
    FIELD(h, i, "s7comm.request.reason", "128");
    FIELD(h, i, "s7comm.response.cotp_type", "\"DC\"");
    check_clean(h);
    /* A DC of the minimum size: references only (LI 5). */
    ots_harness_feed(h, REQ, PDU(0x03, 0x00, 0x00, 0x0b, 0x06, 0x80, 0x00, 0x03, 0x00, 0x04, 0x80));
    ots_harness_feed(h, RSP, PDU(0x03, 0x00, 0x00, 0x0a, 0x05, 0xc0, 0x00, 0x04, 0x00, 0x03));
    i = tx(h, 1);
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "s7comm.response.cotp_type", "\"DC\"");
    FIELD(h, i, "s7comm.response.dst_ref", "4");
    FIELD(h, i, "s7comm.response.src_ref", "3");
    check_clean(h);
    /* ER TPDU and a truncated CR. */
    ots_harness_feed(h, RSP, PDU(0x03, 0x00, 0x00, 0x08, 0x03, 0x70, 0x00, 0x01));
    CU_ASSERT_EQUAL(alerts(h, "cotp_error"), 1);
    ots_harness_feed(h, REQ, PDU(0x03, 0x00, 0x00, 0x08, 0x03, 0xe0, 0x00, 0x01));
    CU_ASSERT_EQUAL(alerts(h, "bad_cotp"), 1);
    /* CC without CR. */
    ots_harness_feed(h, RSP, PDU(0x03, 0x00, 0x00, 0x0b, 0x06, 0xd0, 0x00, 0x01, 0x00, 0x01, 0x00));
    CU_ASSERT_EQUAL(alerts(h, "response_without_request"), 1);
    FIELD(h, tx(h, 2), "status", "\"no_request\"");
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

/* ---- jobs -------------------------------------------------------------- */

static void
test_setup_communication(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, setup_req, sizeof(setup_req));
    ots_harness_set_time(h, T0 + 2871);
    send(h, RSP, setup_rsp, sizeof(setup_rsp));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "240");
    FIELD(h, i, "function_name", "\"setup_communication\"");
    FIELD(h, i, "op_class", "\"session\"");
    FIELD(h, i, "latency_us", "2871");
    FIELD(h, i, "s7comm.request.rosctr", "1");
    FIELD(h, i, "s7comm.request.rosctr_name", "\"job\"");
    FIELD(h, i, "s7comm.request.pdu_size", "480");
    FIELD(h, i, "s7comm.response.rosctr", "3");
    FIELD(h, i, "s7comm.response.pdu_size", "240");
    FIELD(h, i, "s7comm.response.error_class", "0");
    FIELD(h, i, "s7comm.request.cotp_type", "\"DT\"");
    check_clean(h);
}

static void
test_write_var(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, write_req, sizeof(write_req));
    send(h, RSP, write_rsp, sizeof(write_rsp));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "5");
    FIELD(h, i, "function_name", "\"write_var\"");
    FIELD(h, i, "op_class", "\"write\"");
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "s7comm.request.pdu_ref", "6144");
    FIELD(h, i, "s7comm.request.item_count", "1");
    FIELD(h, i, "s7comm.request.items.0.area", "131");
    FIELD(h, i, "s7comm.request.items.0.area_name", "\"flags\"");
    FIELD(h, i, "s7comm.request.items.0.db", "0");
    FIELD(h, i, "s7comm.request.items.0.address", "128");
    FIELD(h, i, "s7comm.request.items.0.byte", "16");
    FIELD(h, i, "s7comm.request.items.0.length", "1");
    FIELD(h, i, "s7comm.request.items.0.transport_size", "8");
    FIELD(h, i, "s7comm.request.return_codes", "[0]");
    FIELD(h, i, "s7comm.response.return_codes", "[255]");
    check_clean(h);
}

static void
test_read_var_failed_items(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* s7ident.pcap frame 31: five items, DB16 / I / Q / timers / counters. */
    send(h, REQ,
         PDU(0x32, 0x01, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x3e, 0x00, 0x00, 0x04, 0x05, 0x12, 0x0a,
             0x10, 0x02, 0x00, 0x10, 0x00, 0x00, 0x83, 0x00, 0x00, 0x00, 0x12, 0x0a, 0x10, 0x02,
             0x00, 0x10, 0x00, 0x00, 0x81, 0x00, 0x00, 0x00, 0x12, 0x0a, 0x10, 0x02, 0x00, 0x10,
             0x00, 0x00, 0x82, 0x00, 0x00, 0x00, 0x12, 0x0a, 0x10, 0x1d, 0x00, 0x08, 0x00, 0x00,
             0x1d, 0x00, 0x00, 0x00, 0x12, 0x0a, 0x10, 0x1c, 0x00, 0x08, 0x00, 0x00, 0x1c, 0x00,
             0x00, 0x00));
    /* frame 32: every item "object does not exist", length 4 but no value. */
    send(h, RSP,
         PDU(0x32, 0x03, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x02, 0x00, 0x14, 0x00, 0x00, 0x04, 0x05,
             0x0a, 0x00, 0x00, 0x04, 0x0a, 0x00, 0x00, 0x04, 0x0a, 0x00, 0x00, 0x04, 0x0a, 0x00,
             0x00, 0x04, 0x0a, 0x00, 0x00, 0x04));
    gint i = tx(h, 0);
    FIELD(h, i, "function_name", "\"read_var\"");
    FIELD(h, i, "op_class", "\"read\"");
    FIELD(h, i, "s7comm.request.item_count", "5");
    FIELD(h, i, "s7comm.request.items.0.area", "131");
    FIELD(h, i, "s7comm.request.items.0.length", "16");
    FIELD(h, i, "s7comm.request.items.3.area", "29");
    FIELD(h, i, "s7comm.request.items.3.area_name", "\"timer_s7\"");
    FIELD(h, i, "s7comm.request.items.4.area", "28");
    FIELD(h, i, "s7comm.response.item_count", "5");
    FIELD(h, i, "s7comm.response.return_codes", "[10,10,10,10,10]");
    check_clean(h);
}

static void
test_read_var_values(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* DB1.DBB3 (3 bytes, odd: padded) and I0.5 as a bit. */
    send(h, REQ,
         PDU(0x32, 0x01, 0x00, 0x00, 0x00, 0x07, 0x00, 0x1a, 0x00, 0x00, 0x04, 0x02, 0x12, 0x0a,
             0x10, 0x02, 0x00, 0x03, 0x00, 0x01, 0x84, 0x00, 0x00, 0x18, 0x12, 0x0a, 0x10, 0x01,
             0x00, 0x01, 0x00, 0x00, 0x81, 0x00, 0x00, 0x05));
    send(h, RSP,
         PDU(0x32, 0x03, 0x00, 0x00, 0x00, 0x07, 0x00, 0x02, 0x00, 0x0d, 0x00, 0x00, 0x04, 0x02,
             0xff, 0x04, 0x00, 0x18, 0x01, 0x02, 0x03, 0x00, 0xff, 0x03, 0x00, 0x01, 0x01));
    gint i = tx(h, 0);
    FIELD(h, i, "s7comm.request.items.0.db", "1");
    FIELD(h, i, "s7comm.request.items.0.area_name", "\"data_block\"");
    FIELD(h, i, "s7comm.request.items.0.byte", "3");
    FIELD(h, i, "s7comm.request.items.1.address", "5");
    FIELD(h, i, "s7comm.request.items.1.bit", "5");
    FIELD(h, i, "s7comm.response.return_codes", "[255,255]");
    FIELD(h, i, "status", "\"ok\"");
    check_clean(h);
}

static void
test_read_var_address_bits(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* M1.2 with the five unused top bits of the address set: the byte
     * address is bits 3..18 only; the address is reported as sent. */
    send(h, REQ,
         PDU(0x32, 0x01, 0x00, 0x00, 0x00, 0x08, 0x00, 0x0e, 0x00, 0x00, 0x04, 0x01, 0x12, 0x0a,
             0x10, 0x01, 0x00, 0x01, 0x00, 0x00, 0x83, 0xf8, 0x00, 0x0a));
    ots_harness_end(h);
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"unanswered\"");
    FIELD(h, i, "s7comm.request.items.0.address", "16252938");
    FIELD(h, i, "s7comm.request.items.0.byte", "1");
    FIELD(h, i, "s7comm.request.items.0.bit", "2");
}

static void
test_upload(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* snap7.pcap frame 17: start upload of SDB0. */
    send(h, REQ,
         PDU(0x32, 0x01, 0x00, 0x00, 0x08, 0x00, 0x00, 0x12, 0x00, 0x00, 0x1d, 0x00, 0x00, 0x00,
             0x00, 0x00, 0x00, 0x00, 0x09, 0x5f, 0x30, 0x42, 0x30, 0x30, 0x30, 0x30, 0x30, 0x41));
    send(h, RSP,
         PDU(0x32, 0x03, 0x00, 0x00, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x1d, 0x00,
             0x01, 0x00, 0x00, 0x00, 0x00, 0x07, 0x07, 0x30, 0x30, 0x30, 0x30, 0x31, 0x30, 0x30));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "29");
    FIELD(h, i, "function_name", "\"start_upload\"");
    FIELD(h, i, "op_class", "\"program_upload\"");
    FIELD(h, i, "s7comm.request.file_name", "\"_0B00000A\"");
    FIELD(h, i, "s7comm.request.block_type", "\"SDB\"");
    FIELD(h, i, "s7comm.request.block_number", "0");
    FIELD(h, i, "s7comm.request.file_system", "\"A\"");
    FIELD(h, i, "s7comm.response.upload_id", "7");
    FIELD(h, i, "s7comm.response.block_length", "\"0000100\"");
    check_clean(h);

    /* s7ident.pcap frame 21: ack with error class 0xd2 code 0x41. */
    send(h, REQ,
         PDU(0x32, 0x01, 0x00, 0x00, 0x06, 0x00, 0x00, 0x12, 0x00, 0x00, 0x1d, 0x00, 0x00, 0x00,
             0x00, 0x00, 0x00, 0x00, 0x09, 0x5f, 0x30, 0x42, 0x30, 0x30, 0x30, 0x30, 0x30, 0x41));
    send(h, RSP, PDU(0x32, 0x02, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0xd2, 0x41));
    i = tx(h, 1);
    FIELD(h, i, "status", "\"exception\"");
    FIELD(h, i, "s7comm.response.rosctr_name", "\"ack\"");
    FIELD(h, i, "s7comm.response.error_class", "210");
    FIELD(h, i, "s7comm.response.error_code", "65");
    CU_ASSERT_EQUAL(ots_harness_count(h, "alert"), 0);
}

static void
test_upload_acks(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* As snap7.pcap frames 19/20 (shorter block): the upload ack's
     * parameters are the function and its status alone. */
    send(h, REQ,
         PDU(0x32, 0x01, 0x00, 0x00, 0x09, 0x00, 0x00, 0x08, 0x00, 0x00, 0x1e, 0x00, 0x00, 0x00,
             0x00, 0x00, 0x00, 0x07));
    send(h, RSP,
         PDU(0x32, 0x03, 0x00, 0x00, 0x09, 0x00, 0x00, 0x02, 0x00, 0x06, 0x00, 0x00, 0x1e, 0x01,
             0x00, 0x02, 0x00, 0xfb, 0x70, 0x70));
    gint i = tx(h, 0);
    FIELD(h, i, "function_name", "\"upload\"");
    FIELD(h, i, "s7comm.request.function_status", "0");
    FIELD(h, i, "s7comm.request.upload_id", "7");
    FIELD(h, i, "s7comm.response.function_status", "1");
    FIELD(h, i, "s7comm.response.block_data_length", "2");
    ABSENT(h, i, "s7comm.response.upload_id");

    /* snap7.pcap frames 21/22: end upload, whose ack has no status byte. */
    send(h, REQ,
         PDU(0x32, 0x01, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x08, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00,
             0x00, 0x00, 0x00, 0x07));
    send(h, RSP, PDU(0x32, 0x03, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x1f));
    i = tx(h, 1);
    FIELD(h, i, "function_name", "\"end_upload\"");
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "s7comm.request.function_status", "0");
    FIELD(h, i, "s7comm.request.upload_id", "7");
    ABSENT(h, i, "s7comm.response.function_status");
    check_clean(h);
}

static void
test_download(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* Request download of OB1 into the passive file system. */
    send(h, REQ,
         PDU(0x32, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x20, 0x00, 0x00, 0x1a, 0x00, 0x01, 0x00,
             0x00, 0x00, 0x00, 0x00, 0x09, 0x5f, 0x30, 0x38, 0x30, 0x30, 0x30, 0x30, 0x31, 0x50,
             0x0d, 0x31, 0x30, 0x30, 0x30, 0x31, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x35, 0x30));
    send(h, RSP, PDU(0x32, 0x03, 0x00, 0x00, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x1a));
    gint i = tx(h, 0);
    FIELD(h, i, "function_name", "\"request_download\"");
    FIELD(h, i, "op_class", "\"program_download\"");
    FIELD(h, i, "s7comm.request.block_type", "\"OB\"");
    FIELD(h, i, "s7comm.request.block_number", "1");
    FIELD(h, i, "s7comm.request.file_system", "\"P\"");
    check_clean(h);
}

static void
test_plc_control(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* snap7.pcap frame 63: PI service P_PROGRAM (warm start) with "C ". */
    send(h, REQ,
         PDU(0x32, 0x01, 0x00, 0x00, 0x20, 0x00, 0x00, 0x16, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00,
             0x00, 0x00, 0x00, 0xfd, 0x00, 0x02, 0x43, 0x20, 0x09, 0x50, 0x5f, 0x50, 0x52, 0x4f,
             0x47, 0x52, 0x41, 0x4d));
    send(h, RSP,
         PDU(0x32, 0x03, 0x00, 0x00, 0x20, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x28, 0x00));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "40");
    FIELD(h, i, "function_name", "\"plc_control\"");
    FIELD(h, i, "op_class", "\"run_state\"");
    FIELD(h, i, "s7comm.request.pi_service", "\"P_PROGRAM\"");
    FIELD(h, i, "s7comm.request.pi_parameter", "\"C \"");
    /* snap7.pcap frame 57: PLC stop. */
    send(h, REQ,
         PDU(0x32, 0x01, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x10, 0x00, 0x00, 0x29, 0x00, 0x00, 0x00,
             0x00, 0x00, 0x09, 0x50, 0x5f, 0x50, 0x52, 0x4f, 0x47, 0x52, 0x41, 0x4d));
    send(h, RSP, PDU(0x32, 0x03, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x29));
    i = tx(h, 1);
    FIELD(h, i, "function_name", "\"plc_stop\"");
    FIELD(h, i, "op_class", "\"run_state\"");
    FIELD(h, i, "s7comm.request.pi_service", "\"P_PROGRAM\"");
    /* _INSE changes the program. */
    send(h, REQ,
         PDU(0x32, 0x01, 0x00, 0x00, 0x21, 0x00, 0x00, 0x14, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00,
             0x00, 0x00, 0x00, 0xfd, 0x00, 0x04, 0x30, 0x38, 0x30, 0x31, 0x05, 0x5f, 0x49, 0x4e,
             0x53, 0x45));
    i = ots_harness_count(h, "transaction");
    ots_harness_end(h);
    i = tx(h, 2);
    FIELD(h, i, "status", "\"unanswered\"");
    FIELD(h, i, "op_class", "\"program_download\"");
    FIELD(h, i, "s7comm.request.pi_service", "\"_INSE\"");
    check_clean(h);
}

/* ---- userdata ----------------------------------------------------------- */

static void
test_userdata_clock(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* snap7.pcap frame 47: set clock. */
    send(h, REQ,
         PDU(0x32, 0x07, 0x00, 0x00, 0x17, 0x00, 0x00, 0x08, 0x00, 0x0e, 0x00, 0x01, 0x12, 0x04,
             0x11, 0x47, 0x02, 0x00, 0xff, 0x09, 0x00, 0x0a, 0x00, 0x19, 0x16, 0x02, 0x08, 0x23,
             0x08, 0x10, 0x00, 0x02));
    send(h, RSP,
         PDU(0x32, 0x07, 0x00, 0x00, 0x17, 0x00, 0x00, 0x0c, 0x00, 0x04, 0x00, 0x01, 0x12, 0x08,
             0x12, 0x87, 0x02, 0x01, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "67330"); /* 0x10702 */
    FIELD(h, i, "function_name", "\"set_clock\"");
    FIELD(h, i, "op_class", "\"time_set\"");
    FIELD(h, i, "s7comm.function_group", "7");
    FIELD(h, i, "s7comm.subfunction", "2");
    FIELD(h, i, "s7comm.request.rosctr", "7");
    FIELD(h, i, "s7comm.request.method", "17");
    FIELD(h, i, "s7comm.request.return_codes", "[255]");
    FIELD(h, i, "s7comm.response.type", "8");
    FIELD(h, i, "s7comm.response.return_codes", "[10]");
    FIELD(h, i, "status", "\"ok\"");
    check_clean(h);
}

/* SZL 0x001c, index 0, two component records split over two data units. */
static void
test_szl_reassembly_asset(void)
{
    g_autoptr(OtsHarness) h = harness();
    static const guint8 szl_req[] = {0x32, 0x07, 0x00, 0x00, 0x02, 0x00, 0x00, 0x08, 0x00,
                                     0x08, 0x00, 0x01, 0x12, 0x04, 0x11, 0x44, 0x01, 0x00,
                                     0xff, 0x09, 0x00, 0x04, 0x00, 0x1c, 0x00, 0x00};
    send(h, REQ, szl_req, sizeof(szl_req));
    /* First data unit: SZL header + record 1 (station name) + 10 bytes of record 5. */
    guint8 r1[200] = {0x32, 0x07, 0x00, 0x00, 0x02, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x12,
                      0x08, 0x12, 0x84, 0x01, 0x02, 0xd5, 0x01, 0x00, 0x00, 0xff, 0x09, 0x00, 0x00};
    gsize n = 26;
    static const guint8 hdr[] = {0x00, 0x1c, 0x00, 0x00, 0x00, 0x22, 0x00, 0x02};
    memcpy(r1 + n, hdr, sizeof(hdr));
    n += sizeof(hdr);
    guint8 rec1[34] = {0x00, 0x01};
    memset(rec1 + 2, 0, 32);
    memcpy(rec1 + 2, "PLANT-PLC", 9);
    memcpy(r1 + n, rec1, 34);
    n += 34;
    guint8 rec5[34] = {0x00, 0x05};
    memset(rec5 + 2, ' ', 32);
    memcpy(rec5 + 2, "S C-X1234", 9);
    memcpy(r1 + n, rec5, 10);
    n += 10;
    guint16 dlen = (guint16)(n - 26 + 4);
    r1[8] = dlen >> 8;
    r1[9] = dlen & 0xff;
    r1[24] = (guint8)((dlen - 4) >> 8);
    r1[25] = (guint8)((dlen - 4) & 0xff);
    send(h, RSP, r1, n);
    gint i = tx(h, 0);
    FIELD(h, i, "function_name", "\"read_szl\"");
    FIELD(h, i, "op_class", "\"diagnostics\"");
    FIELD(h, i, "s7comm.request.szl_id", "28");
    FIELD(h, i, "s7comm.response.fragment", "true");
    FIELD(h, i, "s7comm.response.last_data_unit", "false");
    ABSENT(h, i, "s7comm.response.szl_id");
    CU_ASSERT_EQUAL(ots_harness_count(h, "asset"), 0);

    /* Follow-up request (method 0x12, type request) and the last unit. */
    send(h, REQ,
         PDU(0x32, 0x07, 0x00, 0x00, 0x03, 0x00, 0x00, 0x0c, 0x00, 0x04, 0x00, 0x01, 0x12, 0x08,
             0x12, 0x44, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00));
    guint8 r2[100] = {0x32, 0x07, 0x00, 0x00, 0x03, 0x00, 0x00, 0x0c, 0x00, 0x1c, 0x00, 0x01, 0x12,
                      0x08, 0x12, 0x84, 0x01, 0x02, 0xd5, 0x00, 0x00, 0x00, 0xff, 0x09, 0x00, 0x18};
    memcpy(r2 + 26, rec5 + 10, 24);
    send(h, RSP, r2, 50);
    i = tx(h, 1);
    FIELD(h, i, "s7comm.response.szl_id", "28");
    FIELD(h, i, "s7comm.response.szl_index", "0");
    FIELD(h, i, "s7comm.response.last_data_unit", "true");
    FIELD(h, i, "s7comm.request.return_codes", "[10]");
    gint a = ots_harness_find(h, "asset", 0);
    FIELD(h, a, "role", "\"controller\"");
    FIELD(h, a, "vendor", "\"Siemens\"");
    FIELD(h, a, "name", "\"PLANT-PLC\"");
    FIELD(h, a, "serial", "\"S C-X1234\"");
    FIELD(h, a, "s7comm.szl_id", "28");
    check_clean(h);
}

static void
test_szl_module_identification(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint8 r[200] = {0x32, 0x07, 0x00, 0x00, 0x01, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x12,
                     0x08, 0x12, 0x84, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0xff, 0x09, 0x00, 0x00};
    gsize n = 26;
    static const guint8 hdr[] = {0x00, 0x11, 0x00, 0x00, 0x00, 0x1c, 0x00, 0x02};
    memcpy(r + n, hdr, 8);
    n += 8;
    guint8 rec[28];
    memset(rec, ' ', sizeof(rec));
    rec[0] = 0;
    rec[1] = 1;
    memcpy(rec + 2, "6ES7 315-2EH14-0AB0", 19);
    rec[22] = rec[23] = 0;
    memcpy(r + n, rec, 28);
    n += 28;
    memset(rec, ' ', sizeof(rec));
    rec[0] = 0;
    rec[1] = 7;
    rec[22] = rec[23] = 0;
    rec[24] = 'V';
    rec[25] = 3;
    rec[26] = 2;
    rec[27] = 6;
    memcpy(r + n, rec, 28);
    n += 28;
    guint16 dlen = (guint16)(n - 26 + 4);
    r[9] = dlen & 0xff;
    r[25] = (guint8)(dlen - 4);
    send(h, REQ,
         PDU(0x32, 0x07, 0x00, 0x00, 0x01, 0x00, 0x00, 0x08, 0x00, 0x08, 0x00, 0x01, 0x12, 0x04,
             0x11, 0x44, 0x01, 0x00, 0xff, 0x09, 0x00, 0x04, 0x00, 0x11, 0x00, 0x00));
    send(h, RSP, r, n);
    FIELD(h, tx(h, 0), "s7comm.response.szl_id", "17");
    gint a = ots_harness_find(h, "asset", 0);
    FIELD(h, a, "product_code", "\"6ES7 315-2EH14-0AB0\"");
    FIELD(h, a, "firmware", "\"V3.2.6\"");
    check_clean(h);
}

static void
test_userdata_push_and_block_info(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* A CPU alarm indication pushed by the PLC (type 0). */
    send(h, RSP,
         PDU(0x32, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x04, 0x00, 0x01, 0x12, 0x08,
             0x12, 0x04, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00));
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"unsolicited\"");
    FIELD(h, i, "function_name", "\"alarm_sq_indication\"");
    FIELD(h, i, "s7comm.response.type", "0");
    ABSENT(h, i, "latency_us");
    /* Get block info DB 1 (group 3 subfunction 3). */
    send(h, REQ,
         PDU(0x32, 0x07, 0x00, 0x00, 0x05, 0x00, 0x00, 0x08, 0x00, 0x0c, 0x00, 0x01, 0x12, 0x04,
             0x11, 0x43, 0x03, 0x00, 0xff, 0x09, 0x00, 0x08, 0x30, 0x41, 0x30, 0x30, 0x30, 0x30,
             0x31, 0x41));
    send(h, RSP,
         PDU(0x32, 0x07, 0x00, 0x00, 0x05, 0x00, 0x00, 0x0c, 0x00, 0x04, 0x00, 0x01, 0x12, 0x08,
             0x12, 0x83, 0x03, 0x01, 0x00, 0x00, 0xd2, 0x09, 0x0a, 0x00, 0x00, 0x00));
    i = tx(h, 1);
    FIELD(h, i, "function_name", "\"get_block_info\"");
    FIELD(h, i, "op_class", "\"discovery\"");
    FIELD(h, i, "status", "\"exception\"");
    FIELD(h, i, "s7comm.request.block_type", "\"0A\"");
    FIELD(h, i, "s7comm.request.block_number", "\"00001\"");
    FIELD(h, i, "s7comm.response.userdata_error_code", "53769");
    check_clean(h);
}

/* ---- framing ----------------------------------------------------------- */

static void
test_framing_split_and_batched(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint8 buf[256];
    gsize n = wrap(buf, setup_req, sizeof(setup_req));
    /* Byte by byte. */
    for (gsize k = 0; k + 1 < n; k++)
        CU_ASSERT_EQUAL(ots_harness_feed(h, REQ, buf + k, 1), OTS_PARSE_NEED_MORE);
    ots_harness_feed(h, REQ, buf + n - 1, 1);
    /* Two responses... one answer and a write response in one segment. */
    gsize m = wrap(buf, setup_rsp, sizeof(setup_rsp));
    send(h, REQ, write_req, sizeof(write_req));
    m += wrap(buf + m, write_rsp, sizeof(write_rsp));
    CU_ASSERT_EQUAL(ots_harness_feed(h, RSP, buf, m), OTS_PARSE_OK);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    FIELD(h, tx(h, 0), "function_name", "\"setup_communication\"");
    FIELD(h, tx(h, 1), "function_name", "\"write_var\"");
    FIELD(h, tx(h, 1), "status", "\"ok\"");
    check_clean(h);
}

static void
test_cotp_dt_reassembly(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* The setup request split over two DT TPDUs (first without EOT). */
    guint8 a[32] = {0x03, 0x00, 0x00, 0x0f, 0x02, 0xf0, 0x00};
    memcpy(a + 7, setup_req, 8);
    guint8 b[32] = {0x03, 0x00, 0x00, 0x11, 0x02, 0xf0, 0x81};
    memcpy(b + 7, setup_req + 8, 10);
    ots_harness_feed(h, REQ, a, 15);
    ots_harness_feed(h, REQ, b, 17);
    send(h, RSP, setup_rsp, sizeof(setup_rsp));
    FIELD(h, tx(h, 0), "s7comm.request.pdu_size", "480");
    FIELD(h, tx(h, 0), "status", "\"ok\"");
    check_clean(h);
}

static void
test_gap_resync(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint8 buf[256];
    gsize n = wrap(buf, write_req, sizeof(write_req));
    /* Mid-stream start: the tail of one TPKT, then a whole one. */
    ots_harness_gap(h, REQ, 0);
    guint8 seg[512];
    memcpy(seg, buf + 9, n - 9);
    memcpy(seg + n - 9, buf, n);
    ots_harness_feed(h, REQ, seg, 2 * n - 9);
    send(h, RSP, write_rsp, sizeof(write_rsp));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    FIELD(h, tx(h, 0), "status", "\"ok\"");
    CU_ASSERT_EQUAL(ots_harness_count(h, "alert"), 0);
}

static void
test_bad_tpkt(void)
{
    g_autoptr(OtsHarness) h = harness();
    ots_harness_feed(h, REQ, PDU(0x04, 0x00, 0x00, 0x10, 0x00, 0x00));
    CU_ASSERT_EQUAL(alerts(h, "bad_tpkt"), 1);
    /* Recovers on the next valid TPKT. */
    send(h, REQ, setup_req, sizeof(setup_req));
    send(h, RSP, setup_rsp, sizeof(setup_rsp));
    FIELD(h, tx(h, 0), "status", "\"ok\"");
    ots_harness_feed(h, REQ, PDU(0x03, 0x00, 0x00, 0x02));
    CU_ASSERT_EQUAL(alerts(h, "bad_tpkt"), 2);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

/* ---- malformed PDUs ---------------------------------------------------- */

static void
test_malformed(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* Truncated S7 header. */
    send(h, REQ, PDU(0x32, 0x01, 0x00));
    CU_ASSERT(alerts(h, "bad_length") >= 1);
    /* Unknown protocol id in a DT. */
    send(h, REQ, PDU(0x99, 0x01));
    CU_ASSERT_EQUAL(alerts(h, "bad_protocol_id"), 1);
    /* Parameter + data lengths beyond the PDU. */
    send(h, REQ, PDU(0x32, 0x01, 0x00, 0x00, 0x00, 0x09, 0x00, 0x40, 0x00, 0x00, 0x04, 0x01));
    CU_ASSERT(alerts(h, "bad_length") >= 2);
    /* Unknown ROSCTR and function. */
    send(h, REQ, PDU(0x32, 0x05, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x00));
    CU_ASSERT_EQUAL(alerts(h, "bad_rosctr"), 1);
    send(h, REQ, PDU(0x32, 0x01, 0x00, 0x00, 0x00, 0x0b, 0x00, 0x01, 0x00, 0x00, 0x77));
    CU_ASSERT_EQUAL(alerts(h, "bad_function"), 1);
    /* Item count larger than the items present; bad var spec. */
    send(h, REQ,
         PDU(0x32, 0x01, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x0e, 0x00, 0x00, 0x04, 0x09, 0x13, 0x0a,
             0x10, 0x02, 0x00, 0x01, 0x00, 0x01, 0x84, 0x00, 0x00, 0x00));
    CU_ASSERT(alerts(h, "bad_item_count") + alerts(h, "bad_item") >= 1);
    /* Userdata with a wrong parameter head. */
    send(h, REQ,
         PDU(0x32, 0x07, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x08, 0x00, 0x00, 0x01, 0x01, 0x12, 0x04,
             0x11, 0x44, 0x01, 0x00));
    CU_ASSERT_EQUAL(alerts(h, "bad_userdata"), 1);
    /* Response to a request we did not see. */
    send(h, RSP, write_rsp, sizeof(write_rsp));
    CU_ASSERT_EQUAL(alerts(h, "response_without_request"), 1);
    ots_harness_end(h);
    /* Every PDU with a readable header is still one transaction. */
    CU_ASSERT(ots_harness_count(h, "transaction") >= 5);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_garbage(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint32 seed = 12345;
    guint8 buf[512];
    for (guint round = 0; round < 200; round++) {
        gsize n = 1 + (round * 37) % sizeof(buf);
        for (gsize k = 0; k < n; k++) {
            seed = seed * 1103515245u + 12345u;
            buf[k] = (guint8)(seed >> 16);
        }
        /* Make about half of them look like TPKT/COTP DT S7. */
        if (round % 2 && n > 12) {
            buf[0] = 3;
            buf[1] = 0;
            buf[2] = (guint8)(n >> 8);
            buf[3] = (guint8)n;
            buf[4] = 2;
            buf[5] = 0xf0;
            buf[6] = 0x80;
            buf[7] = (round % 4 == 1) ? 0x32 : 0x72;
        }
        ots_harness_feed(h, round % 3 ? REQ : RSP, buf, n);
        if (round % 50 == 0)
            ots_harness_gap(h, REQ, 10);
    }
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

/* ---- pairing bookkeeping ------------------------------------------------ */

static void
test_unanswered_tick(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, write_req, sizeof(write_req));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    /* Both stay pending until the flow ends (the harness does not tick). */
    ots_harness_set_time(h, T0 + 31 * G_USEC_PER_SEC);
    send(h, REQ, setup_req, sizeof(setup_req));
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    FIELD(h, tx(h, 0), "status", "\"unanswered\"");
    FIELD(h, tx(h, 0), "function_name", "\"write_var\"");
    FIELD(h, tx(h, 1), "status", "\"unanswered\"");
    check_clean(h);
}

static void
test_reused_pdu_ref(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, write_req, sizeof(write_req));
    send(h, REQ, write_req, sizeof(write_req));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    FIELD(h, tx(h, 0), "status", "\"unanswered\"");
    send(h, RSP, write_rsp, sizeof(write_rsp));
    FIELD(h, tx(h, 1), "status", "\"ok\"");
    check_clean(h);
}

/* ---- S7comm-plus --------------------------------------------------------- */

/* Builds 72 VV LEN [20 digest] @body, trailer 72 VV 00 00. */
static gsize
plus_msg(guint8 *out, guint8 version, gboolean digest, const guint8 *body, gsize n)
{
    gsize dlen = n + (digest ? 33 : 0);
    gsize k = 0;
    out[k++] = 0x72;
    out[k++] = version;
    out[k++] = (guint8)(dlen >> 8);
    out[k++] = (guint8)dlen;
    if (digest) {
        out[k++] = 0x20;
        for (guint j = 0; j < 32; j++)
            out[k++] = (guint8)(0xa0 + j);
    }
    memcpy(out + k, body, n);
    k += n;
    out[k++] = 0x72;
    out[k++] = version;
    out[k++] = 0;
    out[k++] = 0;
    return k;
}

static void
test_plus(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint8 m[256];
    gsize n;
    /* s7comm_plus.pcap frame 7: SetVariable, no response expected (flags 0x74). */
    n = plus_msg(m, 3, TRUE,
                 PDU(0x31, 0x00, 0x00, 0x04, 0xf2, 0x00, 0x00, 0x83, 0x1a, 0x70, 0x00, 0x0e, 0x4d,
                     0x74, 0x70, 0x00, 0x0e, 0x51, 0x01, 0x88, 0x1d, 0x00, 0x00, 0x00, 0x00));
    send(h, REQ, m, n);
    gint i = tx(h, 0);
    FIELD(h, i, "proto", "\"s7comm_plus\"");
    FIELD(h, i, "function", "1266");
    FIELD(h, i, "function_name", "\"set_variable\"");
    FIELD(h, i, "op_class", "\"write\"");
    FIELD(h, i, "status", "\"no_response\"");
    FIELD(h, i, "s7comm_plus.request.version", "3");
    FIELD(h, i, "s7comm_plus.request.integrity", "true");
    FIELD(h, i, "s7comm_plus.request.opcode", "49");
    FIELD(h, i, "s7comm_plus.request.sequence_number", "33562");
    FIELD(h, i, "s7comm_plus.request.session_id", "1879051853");
    FIELD(h, i, "s7comm_plus.request.no_response_expected", "true");

    /* s7comm_plus.pcap frame 2: notification from the PLC. */
    n = plus_msg(m, 3, TRUE,
                 PDU(0x33, 0x70, 0x00, 0x0e, 0x51, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc9, 0x00,
                     0x00, 0x00, 0x00));
    send(h, RSP, m, n);
    i = tx(h, 1);
    FIELD(h, i, "function_name", "\"notification\"");
    FIELD(h, i, "status", "\"unsolicited\"");
    FIELD(h, i, "s7comm_plus.response.subscription_id", "1879051857");

    /* V1 CreateObject (session setup, no integrity) and its response. */
    n = plus_msg(m, 1, FALSE,
                 PDU(0x31, 0x00, 0x00, 0x04, 0xca, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x01, 0x20,
                     0x36, 0x00));
    send(h, REQ, m, n);
    ots_harness_set_time(h, T0 + 900);
    n = plus_msg(m, 1, FALSE,
                 PDU(0x32, 0x00, 0x00, 0x04, 0xca, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00));
    send(h, RSP, m, n);
    i = tx(h, 2);
    FIELD(h, i, "function_name", "\"create_object\"");
    FIELD(h, i, "op_class", "\"session\"");
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "latency_us", "900");
    FIELD(h, i, "s7comm_plus.request.integrity", "false");
    FIELD(h, i, "s7comm_plus.response.opcode", "50");
    FIELD(h, i, "s7comm_plus.response.sequence_number", "1");
    check_clean(h);

    /* Bad version and unknown opcode. */
    n = plus_msg(m, 9, FALSE, PDU(0x31, 0x00));
    send(h, REQ, m, n);
    CU_ASSERT_EQUAL(alerts(h, "bad_version"), 1);
    n = plus_msg(m, 1, FALSE, PDU(0x44, 0x00));
    send(h, REQ, m, n);
    CU_ASSERT_EQUAL(alerts(h, "bad_opcode"), 1);
    /* Truncated digest. */
    send(h, REQ, PDU(0x72, 0x03, 0x00, 0x05, 0x20, 0x01, 0x02, 0x03, 0x04));
    CU_ASSERT(alerts(h, "bad_length") >= 1);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

/* ---- memory budget (flows.memcap_mb) ------------------------------------ */

/* SZL read request (userdata, group 4, subfunction 1) with PDU reference @ref. */
static void
send_szl_req(OtsHarness *h, guint8 ref)
{
    guint8 m[] = {0x32, 0x07, 0x00, 0x00, ref,  0x00, 0x00, 0x08, 0x00, 0x08, 0x00, 0x01, 0x12,
                  0x04, 0x11, 0x44, 0x01, 0x00, 0xff, 0x09, 0x00, 0x04, 0x00, 0x1c, 0x00, 0x00};
    send(h, REQ, m, sizeof(m));
}

/* One data unit of an SZL read response to reference @ref: @more when
 * further units follow, @n bytes of SZL payload. */
static void
send_szl_unit(OtsHarness *h, guint8 ref, gboolean more, const guint8 *payload, gsize n)
{
    guint8 m[1024] = {0x32, 0x07, 0x00, 0x00, ref,  0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x12,
                      0x08, 0x12, 0x84, 0x01, 0x02, 0xd5, 0x00, 0x00, 0x00, 0xff, 0x09, 0x00, 0x00};
    g_assert(26 + n <= sizeof(m));
    m[8] = (guint8)((n + 4) >> 8);
    m[9] = (guint8)(n + 4);
    m[19] = more ? 1 : 0;
    m[24] = (guint8)(n >> 8);
    m[25] = (guint8)n;
    memcpy(m + 26, payload, n);
    send(h, RSP, m, 26 + n);
}

/* Whatever a request, a reassembly or an expiry charged is refunded. */
static void
test_memcap_balanced(void)
{
    g_autoptr(OtsHarness) h = harness();
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
    send(h, REQ, write_req, sizeof(write_req));
    CU_ASSERT(ots_harness_mem_used(h) > sizeof(write_req));
    send(h, RSP, write_rsp, sizeof(write_rsp));
    FIELD(h, tx(h, 0), "status", "\"ok\"");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);

    /* Expired on tick. */
    send(h, REQ, write_req, sizeof(write_req));
    ots_harness_tick(h, T0 + 31 * G_USEC_PER_SEC);
    FIELD(h, tx(h, 1), "status", "\"unanswered\"");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);

    /* Evicted by a reused reference, then paired. */
    send(h, REQ, write_req, sizeof(write_req));
    send(h, REQ, write_req, sizeof(write_req));
    FIELD(h, tx(h, 2), "status", "\"unanswered\"");
    send(h, RSP, write_rsp, sizeof(write_rsp));
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);

    /* COTP DT reassembly. */
    guint8 a[32] = {0x03, 0x00, 0x00, 0x0f, 0x02, 0xf0, 0x00};
    memcpy(a + 7, setup_req, 8);
    guint8 b[32] = {0x03, 0x00, 0x00, 0x11, 0x02, 0xf0, 0x81};
    memcpy(b + 7, setup_req + 8, 10);
    ots_harness_feed(h, REQ, a, 15);
    CU_ASSERT(ots_harness_mem_used(h) > 0);
    ots_harness_feed(h, REQ, b, 17);
    send(h, RSP, setup_rsp, sizeof(setup_rsp));
    FIELD(h, tx(h, 4), "function_name", "\"setup_communication\"");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);

    /* SZL data units reassembled over two responses. */
    static const guint8 unit1[] = {0x00, 0x1c, 0x00, 0x00, 0x00, 0x22, 0x00, 0x01, 0x00, 0x01};
    guint8 unit2[32];
    memset(unit2, 0, sizeof(unit2));
    memcpy(unit2, "PLANT-PLC", 9);
    send_szl_req(h, 7);
    send_szl_unit(h, 7, TRUE, unit1, sizeof(unit1));
    CU_ASSERT(ots_harness_mem_used(h) > 0);
    send_szl_req(h, 8);
    send_szl_unit(h, 8, FALSE, unit2, sizeof(unit2));
    FIELD(h, ots_harness_find(h, "asset", 0), "name", "\"PLANT-PLC\"");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);

    /* Flow end. */
    send(h, REQ, write_req, sizeof(write_req));
    ots_harness_feed(h, REQ, a, 15);
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
    CU_ASSERT_EQUAL(ots_harness_memcap_refused(h), 0);
    check_clean(h);
}

/* No budget left: each request is reported at once, unanswered. */
static void
test_memcap_refused(void)
{
    g_autoptr(OtsHarness) h = harness();
    ots_harness_set_memcap(h, 1);
    send(h, REQ, write_req, sizeof(write_req));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    FIELD(h, tx(h, 0), "function_name", "\"write_var\"");
    FIELD(h, tx(h, 0), "status", "\"unanswered\"");
    FIELD(h, tx(h, 0), "s7comm.request.pdu_ref", "6144");
    ABSENT(h, tx(h, 0), "s7comm.response");
    CU_ASSERT(ots_harness_memcap_refused(h) > 0);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);

    /* COTP connect and S7comm-plus requests alike. */
    ots_harness_feed(h, REQ,
                     PDU(0x03, 0x00, 0x00, 0x16, 0x11, 0xe0, 0x00, 0x00, 0x00, 0x01, 0x00, 0xc0,
                         0x01, 0x0a, 0xc1, 0x02, 0x01, 0x00, 0xc2, 0x02, 0x01, 0x01));
    FIELD(h, tx(h, 1), "function_name", "\"cotp_connect\"");
    FIELD(h, tx(h, 1), "status", "\"unanswered\"");
    guint8 m[64];
    gsize n = plus_msg(m, 1, FALSE,
                       PDU(0x31, 0x00, 0x00, 0x04, 0xca, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x01,
                           0x20, 0x36, 0x00));
    send(h, REQ, m, n);
    FIELD(h, tx(h, 2), "function_name", "\"create_object\"");
    FIELD(h, tx(h, 2), "status", "\"unanswered\"");

    /* Its response then has no request. */
    send(h, RSP, write_rsp, sizeof(write_rsp));
    FIELD(h, tx(h, 3), "status", "\"no_request\"");
    CU_ASSERT_EQUAL(alerts(h, "response_without_request"), 1);
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 4);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

/* Room for one request: the oldest is let go (unanswered) for the next. */
static void
test_memcap_evicts_oldest(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, write_req, sizeof(write_req));
    gsize one = ots_harness_mem_used(h);
    ots_harness_set_memcap(h, one);
    send(h, REQ, setup_req, sizeof(setup_req));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    FIELD(h, tx(h, 0), "function_name", "\"write_var\"");
    FIELD(h, tx(h, 0), "status", "\"unanswered\"");
    CU_ASSERT(ots_harness_memcap_refused(h) > 0);
    CU_ASSERT(ots_harness_mem_used(h) > 0);
    CU_ASSERT(ots_harness_mem_used(h) <= one);
    send(h, RSP, setup_rsp, sizeof(setup_rsp));
    FIELD(h, tx(h, 1), "function_name", "\"setup_communication\"");
    FIELD(h, tx(h, 1), "status", "\"ok\"");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
    check_clean(h);
}

/* Reassembly buffers the budget refuses: the partial message is dropped
 * with a memcap anomaly. */
static void
test_memcap_reassembly(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* SZL: room for the request but not for the data unit. */
    send_szl_req(h, 7);
    ots_harness_set_memcap(h, ots_harness_mem_used(h) + 16);
    static const guint8 unit1[] = {0x00, 0x1c, 0x00, 0x00, 0x00, 0x22, 0x00, 0x01, 0x00, 0x01};
    send_szl_unit(h, 7, TRUE, unit1, sizeof(unit1));
    CU_ASSERT_EQUAL(alerts(h, "memcap"), 1);
    CU_ASSERT(ots_harness_memcap_refused(h) > 0);
    FIELD(h, tx(h, 0), "status", "\"ok\"");
    FIELD(h, tx(h, 0), "s7comm.response.fragment", "true");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
    guint8 unit2[32];
    memset(unit2, ' ', sizeof(unit2));
    send_szl_req(h, 8);
    send_szl_unit(h, 8, FALSE, unit2, sizeof(unit2));
    FIELD(h, tx(h, 1), "status", "\"ok\"");
    CU_ASSERT_EQUAL(ots_harness_count(h, "asset"), 0);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);

    /* COTP DT: no budget at all; the rest of the sequence is skipped. */
    ots_harness_set_memcap(h, 1);
    guint8 a[32] = {0x03, 0x00, 0x00, 0x0f, 0x02, 0xf0, 0x00};
    memcpy(a + 7, setup_req, 8);
    guint8 b[32] = {0x03, 0x00, 0x00, 0x11, 0x02, 0xf0, 0x81};
    memcpy(b + 7, setup_req + 8, 10);
    ots_harness_feed(h, REQ, a, 15);
    ots_harness_feed(h, REQ, b, 17);
    CU_ASSERT_EQUAL(alerts(h, "memcap"), 2);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);

    /* With the budget back, the same sequence goes through. */
    ots_harness_set_memcap(h, 0);
    ots_harness_feed(h, REQ, a, 15);
    ots_harness_feed(h, REQ, b, 17);
    send(h, RSP, setup_rsp, sizeof(setup_rsp));
    FIELD(h, tx(h, 2), "function_name", "\"setup_communication\"");
    FIELD(h, tx(h, 2), "status", "\"ok\"");
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static CU_TestInfo s7comm_tests[] = {
    {"descriptor", test_descriptor},
    {"probe", test_probe},
    {"cotp connect", test_cotp_connect},
    {"cotp disconnect and errors", test_cotp_disconnect_and_errors},
    {"setup communication", test_setup_communication},
    {"write var", test_write_var},
    {"read var failed items", test_read_var_failed_items},
    {"read var values", test_read_var_values},
    {"read var address bits", test_read_var_address_bits},
    {"upload", test_upload},
    {"upload acks", test_upload_acks},
    {"download", test_download},
    {"plc control", test_plc_control},
    {"userdata clock", test_userdata_clock},
    {"szl reassembly asset", test_szl_reassembly_asset},
    {"szl module identification", test_szl_module_identification},
    {"userdata push and block info", test_userdata_push_and_block_info},
    {"framing split and batched", test_framing_split_and_batched},
    {"cotp dt reassembly", test_cotp_dt_reassembly},
    {"gap resync", test_gap_resync},
    {"bad tpkt", test_bad_tpkt},
    {"malformed", test_malformed},
    {"garbage", test_garbage},
    {"unanswered tick", test_unanswered_tick},
    {"reused pdu ref", test_reused_pdu_ref},
    {"s7comm-plus", test_plus},
    {"memcap balanced", test_memcap_balanced},
    {"memcap refused", test_memcap_refused},
    {"memcap evicts oldest", test_memcap_evicts_oldest},
    {"memcap reassembly", test_memcap_reassembly},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES                                                                            \
    {                                                                                              \
        "s7comm", NULL, NULL, NULL, NULL, s7comm_tests                                             \
    }
#include "cunit-main.h"
