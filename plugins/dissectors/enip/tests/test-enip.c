/* SPDX-License-Identifier: Apache-2.0 */

/* EtherNet/IP + CIP dissector tests: encapsulation messages built by hand,
 * fed through the dissector harness exactly as the pipeline feeds
 * reassembled TCP or UDP datagrams, events checked field by field. */

#include <stdio.h>
#include <CUnit/CUnit.h>
#include <otsensor/dissector.h>
#include "core/dissect/harness.h"
#include "dissector-test.h"

const OtsPluginHeader *ots_plugin_get_info(void);

#define REQ OTS_DIR_TO_SERVER
#define RSP OTS_DIR_TO_CLIENT
#define T0 ((gint64)1700000000 * G_USEC_PER_SEC)

#define BYTES(...) (const guint8[]){__VA_ARGS__}, sizeof((const guint8[]){__VA_ARGS__})

static const OtsDissectorInfo *
enip(void)
{
    return (const OtsDissectorInfo *)ots_plugin_get_info();
}

static OtsHarness *
harness_l4(OtsL4Proto l4, guint16 port)
{
    OtsHarness *h = ots_harness_new(enip(), l4, port);
    ots_harness_set_time(h, T0);
    return h;
}

static OtsHarness *
harness(void)
{
    return harness_l4(OTS_L4_TCP, 44818);
}

/* Builds an encapsulation message: 24-byte header + @data. */
static gsize
encap(guint8 *out, guint16 cmd, guint32 session, guint32 status, guint8 ctx, const guint8 *data,
      gsize n)
{
    memset(out, 0, 24);
    out[0] = cmd & 0xff;
    out[1] = cmd >> 8;
    out[2] = n & 0xff;
    out[3] = (guint8)(n >> 8);
    for (int i = 0; i < 4; i++) {
        out[4 + i] = (session >> (8 * i)) & 0xff;
        out[8 + i] = (status >> (8 * i)) & 0xff;
    }
    out[12] = ctx;
    if (n)
        memcpy(out + 24, data, n);
    return 24 + n;
}

static OtsParseResult
send(OtsHarness *h, OtsDirection dir, guint16 cmd, guint32 session, guint32 status, guint8 ctx,
     const guint8 *data, gsize n)
{
    guint8 buf[1024];
    g_assert(n <= sizeof(buf) - 24);
    return ots_harness_feed(h, dir, buf, encap(buf, cmd, session, status, ctx, data, n));
}

/* SendRRData body: handle, timeout, null address item, unconnected data item with @cip. */
static gsize
rr_body(guint8 *out, const guint8 *cip, gsize n)
{
    static const guint8 head[] = {0, 0, 0, 0, 10, 0, 2, 0, 0, 0, 0, 0, 0xb2, 0};
    memcpy(out, head, sizeof(head));
    out[14] = n & 0xff;
    out[15] = (guint8)(n >> 8);
    memcpy(out + 16, cip, n);
    return 16 + n;
}

static OtsParseResult
send_rr(OtsHarness *h, OtsDirection dir, guint8 ctx, const guint8 *cip, gsize n)
{
    guint8 body[600];
    return send(h, dir, 0x6f, 0x1234, 0, ctx, body, rr_body(body, cip, n));
}

/* SendUnitData body: connected address @conn, connected data with @seq + @cip. */
static OtsParseResult
send_unit(OtsHarness *h, OtsDirection dir, guint32 conn, guint16 seq, const guint8 *cip, gsize n)
{
    guint8 b[600];
    static const guint8 head[] = {0, 0, 0, 0, 0, 0, 2, 0, 0xa1, 0, 4, 0};
    memcpy(b, head, sizeof(head));
    for (int i = 0; i < 4; i++)
        b[12 + i] = (conn >> (8 * i)) & 0xff;
    b[16] = 0xb1;
    b[17] = 0;
    b[18] = (n + 2) & 0xff;
    b[19] = (guint8)((n + 2) >> 8);
    b[20] = seq & 0xff;
    b[21] = seq >> 8;
    memcpy(b + 22, cip, n);
    return send(h, dir, 0x70, 0x1234, 0, 0, b, 22 + n);
}

static gint
tx(OtsHarness *h, guint nth)
{
    return ots_harness_find(h, "transaction", nth);
}

/* ListIdentity reply body for a 1756-ENBT/A (vendor 1, type 12, code 58). */
static gsize
identity_reply(guint8 *b)
{
    static const guint8 item[] = {
        1,    0, /* encapsulation version */
        0,    2,    0xaf, 0x12, 127, 0,   1,   164, 0,    0,   0,
        0,    0,    0,    0,    0,                           /* sockaddr (BE) */
        1,    0,    12,   0,    58,  0,   3,   7,   0x30, 0, /* vendor, type, code, rev 3.7, status
                                                              */
        0x78, 0x56, 0x34, 0x12, 11,  '1', '7', '5', '6',  '-', 'E',
        'N',  'B',  'T',  '/',  'A', 3, /* state */
    };
    b[0] = 1;
    b[1] = 0;
    b[2] = 0x0c;
    b[3] = 0;
    b[4] = sizeof(item);
    b[5] = 0;
    memcpy(b + 6, item, sizeof(item));
    return 6 + sizeof(item);
}

/* ---- descriptor and probe ------------------------------------------------ */

static void
test_descriptor(void)
{
    const OtsDissectorInfo *d = enip();
    CU_ASSERT_EQUAL(d->abi_major, OTS_ABI_MAJOR);
    CU_ASSERT(d->abi_minor <= OTS_ABI_MINOR);
    CU_ASSERT_EQUAL(d->kind, OTS_PLUGIN_KIND_DISSECTOR);
    CU_ASSERT_STRING_EQUAL(d->name, "enip");
    CU_ASSERT_EQUAL(d->tcp_ports[0], 44818);
    CU_ASSERT_EQUAL(d->udp_ports[0], 44818);
    CU_ASSERT_EQUAL(d->udp_ports[1], 2222);
    CU_ASSERT_PTR_NOT_NULL(d->probe);
    CU_ASSERT_PTR_NOT_NULL(d->gap);
    CU_ASSERT_PTR_NOT_NULL(d->flow_end);
    CU_ASSERT_PTR_NOT_NULL(d->tick);
}

static OtsProbeResult
probe(OtsDirection dir, OtsL4Proto l4, const guint8 *data, gsize n)
{
    OtsReader r = OTS_READER_INIT(data, n);
    return enip()->probe(&r, dir, l4);
}

static void
test_probe(void)
{
    guint8 b[64];
    gsize n = encap(b, 0x63, 0, 0, 0, NULL, 0);
    CU_ASSERT_EQUAL(probe(REQ, OTS_L4_TCP, b, n), OTS_PROBE_YES);
    CU_ASSERT_EQUAL(probe(REQ, OTS_L4_UDP, b, n), OTS_PROBE_YES);
    CU_ASSERT_EQUAL(probe(REQ, OTS_L4_TCP, b, 10), OTS_PROBE_NEED_MORE);
    n = encap(b, 0x65, 0, 0, 0, BYTES(1, 0, 0, 0));
    CU_ASSERT_EQUAL(probe(REQ, OTS_L4_TCP, b, n), OTS_PROBE_YES);
    /* Unknown command, non-zero options, status in a request: no. */
    n = encap(b, 0x99, 0, 0, 0, NULL, 0);
    CU_ASSERT_EQUAL(probe(REQ, OTS_L4_TCP, b, n), OTS_PROBE_NO);
    n = encap(b, 0x63, 0, 0, 0, NULL, 0);
    b[20] = 1;
    CU_ASSERT_EQUAL(probe(REQ, OTS_L4_TCP, b, n), OTS_PROBE_NO);
    n = encap(b, 0x63, 0, 1, 0, NULL, 0);
    CU_ASSERT_EQUAL(probe(REQ, OTS_L4_TCP, b, n), OTS_PROBE_NO);
    static const guint8 http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    CU_ASSERT_EQUAL(probe(REQ, OTS_L4_TCP, http, sizeof(http) - 1), OTS_PROBE_NO);
    /* An I/O datagram. */
    CU_ASSERT_EQUAL(
        probe(REQ, OTS_L4_UDP,
              BYTES(2, 0, 0x02, 0x80, 8, 0, 1, 0, 0, 0, 5, 0, 0, 0, 0xb1, 0, 2, 0, 7, 0)),
        OTS_PROBE_YES);
}

/* ---- encapsulation commands --------------------------------------------- */

static void
test_list_identity(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint8 b[128];
    CU_ASSERT_EQUAL(send(h, REQ, 0x63, 0, 0, 7, NULL, 0), OTS_PARSE_OK);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    ots_harness_set_time(h, T0 + 400);
    CU_ASSERT_EQUAL(send(h, RSP, 0x63, 0, 0, 7, b, identity_reply(b)), OTS_PARSE_OK);
    gint i = tx(h, 0);
    FIELD(h, i, "proto", "\"enip\"");
    FIELD(h, i, "function", "99");
    FIELD(h, i, "function_name", "\"list_identity\"");
    FIELD(h, i, "op_class", "\"discovery\"");
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "latency_us", "400");
    FIELD(h, i, "enip.command", "99");
    FIELD(h, i, "enip.request.length", "0");
    FIELD(h, i, "enip.response.status", "0");
    FIELD(h, i, "enip.identity.vendor_id", "1");
    FIELD(h, i, "enip.identity.device_type", "12");
    FIELD(h, i, "enip.identity.product_code", "58");
    FIELD(h, i, "enip.identity.revision", "\"3.007\"");
    FIELD(h, i, "enip.identity.serial", "305419896");
    FIELD(h, i, "enip.identity.product_name", "\"1756-ENBT/A\"");
    FIELD(h, i, "enip.identity.state", "3");
    ABSENT(h, i, "cip");
    gint a = ots_harness_find(h, "asset", 0);
    FIELD(h, a, "vendor", "\"Rockwell Automation/Allen-Bradley\"");
    FIELD(h, a, "product", "\"1756-ENBT/A\"");
    FIELD(h, a, "product_code", "\"58\"");
    FIELD(h, a, "firmware", "\"3.007\"");
    FIELD(h, a, "serial", "\"0x12345678\"");
    FIELD(h, a, "model", "\"communications_adapter\"");
    FIELD(h, a, "enip.socket_address", "\"127.0.1.164\"");
    FIELD(h, a, "enip.socket_port", "44818");
    check_clean(h);
}

static void
test_list_identity_udp(void)
{
    g_autoptr(OtsHarness) h = harness_l4(OTS_L4_UDP, 44818);
    guint8 b[128];
    CU_ASSERT_EQUAL(send(h, REQ, 0x63, 0, 0, 0, NULL, 0), OTS_PARSE_OK);
    CU_ASSERT_EQUAL(send(h, RSP, 0x63, 0, 0, 0, b, identity_reply(b)), OTS_PARSE_OK);
    FIELD(h, tx(h, 0), "status", "\"ok\"");
    CU_ASSERT_EQUAL(ots_harness_count(h, "asset"), 1);
    check_clean(h);
    /* A reply to a broadcast request (seen in another flow): no alert. */
    g_autoptr(OtsHarness) h2 = harness_l4(OTS_L4_UDP, 44818);
    CU_ASSERT_EQUAL(send(h2, RSP, 0x63, 0, 0, 0, b, identity_reply(b)), OTS_PARSE_OK);
    FIELD(h2, tx(h2, 0), "status", "\"no_request\"");
    CU_ASSERT_EQUAL(ots_harness_count(h2, "asset"), 1);
    check_clean(h2);
}

static void
test_truncated_identity(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint8 b[128];
    gsize n = identity_reply(b);
    b[4] = 20; /* item claims 20 bytes: too few for an identity */
    CU_ASSERT_EQUAL(send(h, REQ, 0x63, 0, 0, 0, NULL, 0), OTS_PARSE_OK);
    CU_ASSERT_EQUAL(send(h, RSP, 0x63, 0, 0, 0, b, n), OTS_PARSE_OK);
    CU_ASSERT_EQUAL(alerts(h, "bad_identity"), 1);
    CU_ASSERT_EQUAL(ots_harness_count(h, "asset"), 0);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_register_session(void)
{
    g_autoptr(OtsHarness) h = harness();
    CU_ASSERT_EQUAL(send(h, REQ, 0x65, 0, 0, 1, BYTES(1, 0, 0, 0)), OTS_PARSE_OK);
    CU_ASSERT_EQUAL(send(h, RSP, 0x65, 0x1234, 0, 1, BYTES(1, 0, 0, 0)), OTS_PARSE_OK);
    gint i = tx(h, 0);
    FIELD(h, i, "function_name", "\"register_session\"");
    FIELD(h, i, "op_class", "\"session\"");
    FIELD(h, i, "enip.request.session", "0");
    FIELD(h, i, "enip.response.session", "4660");
    FIELD(h, i, "enip.protocol_version", "1");
    /* UnRegisterSession has no reply: one event at once. */
    CU_ASSERT_EQUAL(send(h, REQ, 0x66, 0x1234, 0, 0, NULL, 0), OTS_PARSE_OK);
    i = tx(h, 1);
    FIELD(h, i, "function_name", "\"unregister_session\"");
    FIELD(h, i, "status", "\"no_response\"");
    check_clean(h);
}

static void
test_session_mismatch(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, 0x65, 0, 0, 1, BYTES(1, 0, 0, 0));
    send(h, RSP, 0x65, 0x1234, 0, 1, BYTES(1, 0, 0, 0));
    guint8 body[64];
    gsize n = rr_body(body, BYTES(0x0e, 3, 0x20, 1, 0x24, 1, 0x30, 7));
    CU_ASSERT_EQUAL(send(h, REQ, 0x6f, 0x9999, 0, 2, body, n), OTS_PARSE_OK);
    CU_ASSERT_EQUAL(alerts(h, "session_mismatch"), 1);
}

static void
test_encap_error_status(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, 0x65, 0, 0, 1, BYTES(1, 0, 0, 0));
    CU_ASSERT_EQUAL(send(h, RSP, 0x65, 0, 0x69, 1, NULL, 0), OTS_PARSE_OK);
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"exception\"");
    FIELD(h, i, "enip.response.status", "105");
    FIELD(h, i, "enip.response.status_name", "\"unsupported_protocol_version\"");
    check_clean(h);
}

static void
test_list_services(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, 0x04, 0, 0, 0, NULL, 0);
    send(h, RSP, 0x04, 0, 0, 0,
         BYTES(1, 0, 0x00, 0x01, 20, 0, 1, 0, 0x20, 0x01, 'C', 'o', 'm', 'm', 'u', 'n', 'i', 'c',
               'a', 't', 'i', 'o', 'n', 's', 0, 0));
    gint i = tx(h, 0);
    FIELD(h, i, "function_name", "\"list_services\"");
    FIELD(h, i, "op_class", "\"discovery\"");
    FIELD(h, i, "enip.services.0.name", "\"Communications\"");
    FIELD(h, i, "enip.services.0.capability_flags", "288");
    check_clean(h);
}

/* ---- CIP -------------------------------------------------------------------- */

static void
test_get_attribute_single(void)
{
    g_autoptr(OtsHarness) h = harness();
    CU_ASSERT_EQUAL(send_rr(h, REQ, 5, BYTES(0x0e, 3, 0x20, 0x01, 0x24, 0x01, 0x30, 0x07)),
                    OTS_PARSE_OK);
    ots_harness_set_time(h, T0 + 1500);
    CU_ASSERT_EQUAL(send_rr(h, RSP, 5, BYTES(0x8e, 0, 0, 0, 3, 'A', 'B', 'C')), OTS_PARSE_OK);
    gint i = tx(h, 0);
    FIELD(h, i, "function", "14");
    FIELD(h, i, "function_name", "\"get_attribute_single\"");
    FIELD(h, i, "op_class", "\"read\"");
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "latency_us", "1500");
    FIELD(h, i, "enip.command", "111");
    FIELD(h, i, "enip.request.session", "4660");
    FIELD(h, i, "cip.service", "14");
    FIELD(h, i, "cip.class", "1");
    FIELD(h, i, "cip.instance", "1");
    FIELD(h, i, "cip.attribute", "7");
    FIELD(h, i, "cip.general_status", "0");
    FIELD(h, i, "cip.general_status_name", "\"success\"");
    ABSENT(h, i, "cip.extended_status");
    check_clean(h);
}

static void
test_cip_error(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_rr(h, REQ, 5, BYTES(0x10, 3, 0x20, 0x01, 0x24, 0x01, 0x30, 0x07, 1, 2));
    send_rr(h, RSP, 5, BYTES(0x90, 0, 0x0e, 1, 0x34, 0x12));
    gint i = tx(h, 0);
    FIELD(h, i, "function_name", "\"set_attribute_single\"");
    FIELD(h, i, "op_class", "\"write\"");
    FIELD(h, i, "status", "\"exception\"");
    FIELD(h, i, "cip.general_status", "14");
    FIELD(h, i, "cip.general_status_name", "\"attribute_not_settable\"");
    FIELD(h, i, "cip.extended_status", "[4660]");
    check_clean(h);
}

static void
test_op_classes(void)
{
    static const struct {
        guint8 svc;
        guint8 cls;
        const char *name;
        const char *op;
    } cases[] = {
        {0x05, 0x01, "\"reset\"", "\"restart\""},
        {0x06, 0x01, "\"start\"", "\"run_state\""},
        {0x07, 0x01, "\"stop\"", "\"run_state\""},
        {0x02, 0x01, "\"set_attributes_all\"", "\"write\""},
        {0x4b, 0x37, "\"initiate_upload\"", "\"program_upload\""},
        {0x4c, 0x37, "\"initiate_download\"", "\"program_download\""},
        {0x4b, 0xa1, "\"object_specific\"", "\"firmware\""},
    };
    for (guint k = 0; k < G_N_ELEMENTS(cases); k++) {
        g_autoptr(OtsHarness) h = harness();
        guint8 cip[] = {cases[k].svc, 2, 0x20, cases[k].cls, 0x24, 1};
        send_rr(h, REQ, 1, cip, sizeof(cip));
        guint8 rsp[] = {cases[k].svc | 0x80, 0, 0, 0};
        send_rr(h, RSP, 1, rsp, sizeof(rsp));
        FIELD(h, tx(h, 0), "function_name", cases[k].name);
        FIELD(h, tx(h, 0), "op_class", cases[k].op);
        check_clean(h);
    }
}

static void
test_symbolic_read_tag(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* Read Tag "Prog.Motor[3]", 1 element. */
    send_rr(h, REQ, 9,
            BYTES(0x4c, 8, 0x91, 4, 'P', 'r', 'o', 'g', 0x91, 5, 'M', 'o', 't', 'o', 'r', 0, 0x28,
                  3, 1, 0));
    send_rr(h, RSP, 9, BYTES(0xcc, 0, 0, 0, 0xc4, 0, 1, 0, 0, 0));
    gint i = tx(h, 0);
    FIELD(h, i, "function_name", "\"read_tag\"");
    FIELD(h, i, "op_class", "\"read\"");
    FIELD(h, i, "cip.symbol", "\"Prog.Motor[3]\"");
    FIELD(h, i, "cip.member", "3");
    ABSENT(h, i, "cip.class");
    check_clean(h);
}

static void
test_16bit_segments(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_rr(h, REQ, 9, BYTES(0x0e, 4, 0x21, 0, 0x34, 0x12, 0x25, 0, 0x00, 0x01));
    send_rr(h, RSP, 9, BYTES(0x8e, 0, 0, 0));
    FIELD(h, tx(h, 0), "cip.class", "4660");
    FIELD(h, tx(h, 0), "cip.instance", "256");
    check_clean(h);
}

static void
test_multiple_service_packet(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* Two services: Get_Attribute_List on 1/1 (attrs 5, 7), Set_Attribute_Single 0x69/0/3. */
    send_unit(h, REQ, 0x1111, 42,
              BYTES(0x0a, 2, 0x20, 0x02, 0x24, 0x01, 2, 0, 6, 0, 18, 0, 0x03, 2, 0x20, 0x01, 0x24,
                    0x01, 2, 0, 5, 0, 7, 0, 0x10, 3, 0x20, 0x69, 0x24, 0x00, 0x30, 0x03, 9));
    ots_harness_set_time(h, T0 + 200);
    send_unit(h, RSP, 0x2222, 42,
              BYTES(0x8a, 0, 0x1e, 0, 2, 0, 6, 0, 24, 0, 0x83, 0, 0, 0, 2, 0, 5, 0, 0, 0, 1, 0, 7,
                    0, 0, 0, 2, 0, 0x90, 0, 0x0f, 0));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "10");
    FIELD(h, i, "function_name", "\"multiple_service_packet\"");
    FIELD(h, i, "op_class", "\"write\"");
    FIELD(h, i, "status", "\"exception\"");
    FIELD(h, i, "latency_us", "200");
    FIELD(h, i, "enip.request.connection_id", "4369");
    FIELD(h, i, "enip.response.connection_id", "8738");
    FIELD(h, i, "enip.request.sequence", "42");
    FIELD(h, i, "cip.class", "2");
    FIELD(h, i, "cip.general_status", "30");
    FIELD(h, i, "cip.service_count", "2");
    FIELD(h, i, "cip.services.0.service", "3");
    FIELD(h, i, "cip.services.0.class", "1");
    FIELD(h, i, "cip.services.0.attributes", "[5,7]");
    FIELD(h, i, "cip.services.0.general_status", "0");
    FIELD(h, i, "cip.services.1.service_name", "\"set_attribute_single\"");
    FIELD(h, i, "cip.services.1.class", "105");
    FIELD(h, i, "cip.services.1.instance", "0");
    FIELD(h, i, "cip.services.1.attribute", "3");
    FIELD(h, i, "cip.services.1.general_status", "15");
    check_clean(h);
}

static void
test_msp_bad_offset(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_unit(h, REQ, 1, 1,
              BYTES(0x0a, 2, 0x20, 0x02, 0x24, 0x01, 2, 0, 6, 0, 200, 0, 0x0e, 1, 0x20, 0x01));
    CU_ASSERT_EQUAL(alerts(h, "bad_cip"), 1);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_unconnected_send(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* Unconnected Send to backplane slot 0 wrapping Get_Attributes_All 1/1. */
    send_rr(h, REQ, 3,
            BYTES(0x52, 2, 0x20, 0x06, 0x24, 0x01, 0x0a, 0xf0, 6, 0, 0x01, 2, 0x20, 0x01, 0x24,
                  0x01, 1, 0, 0x01, 0x00));
    static const guint8 ident[] = {0x81, 0, 0,    0,    1,    0,    14, 0,   0x36, 0,   20, 11,
                                   0x60, 0, 0xef, 0xbe, 0xad, 0xde, 4,  'L', '7',  '1', 'x'};
    send_rr(h, RSP, 3, ident, sizeof(ident));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "1");
    FIELD(h, i, "function_name", "\"get_attributes_all\"");
    FIELD(h, i, "cip.class", "1");
    FIELD(h, i, "cip.unconnected_send.route_path", "\"0100\"");
    FIELD(h, i, "cip.unconnected_send.timeout_ticks", "240");
    gint a = ots_harness_find(h, "asset", 0);
    FIELD(h, a, "product", "\"L71x\"");
    FIELD(h, a, "firmware", "\"20.011\"");
    FIELD(h, a, "serial", "\"0xdeadbeef\"");
    FIELD(h, a, "model", "\"programmable_logic_controller\"");
    FIELD(h, a, "enip.source", "\"get_attributes_all\"");
    check_clean(h);
}

static void
test_forward_open(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_rr(h, REQ, 4,
            BYTES(0x54, 2, 0x20, 0x06, 0x24, 0x01, 0x0a, 0x0e, 0x00, 0, 0, 0, 0x01, 0xb0, 0x4b,
                  0x00, /* O->T 0, T->O 0x004bb001 */
                  0x34, 0x12, 0x01, 0x00, 0x78, 0x56, 0x34, 0x12, 3, 0, 0, 0, 0x40, 0x42, 0x0f,
                  0x00, 0xf4, 0x43,                         /* O->T RPI 1 s, params */
                  0x40, 0x42, 0x0f, 0x00, 0xf4, 0x43, 0xa3, /* T->O RPI, params, trigger */
                  3, 0x20, 0x02, 0x24, 0x01, 0x2c, 0x01));
    send_rr(h, RSP, 4,
            BYTES(0xd4, 0, 0, 0, 0x10, 0x00, 0x7c, 0x00, 0x01, 0xb0, 0x4b, 0x00, 0x34, 0x12, 0x01,
                  0x00, 0x78, 0x56, 0x34, 0x12, 0x40, 0x42, 0x0f, 0x00, 0x40, 0x42, 0x0f, 0x00, 0,
                  0));
    gint i = tx(h, 0);
    FIELD(h, i, "function_name", "\"forward_open\"");
    FIELD(h, i, "op_class", "\"session\"");
    FIELD(h, i, "cip.forward_open.to_connection_id", "4960257");
    FIELD(h, i, "cip.forward_open.ot_rpi_us", "1000000");
    FIELD(h, i, "cip.forward_open.connection_serial", "4660");
    FIELD(h, i, "cip.forward_open.response_ot_connection_id", "8126480");
    FIELD(h, i, "cip.forward_open.to_api_us", "1000000");
    check_clean(h);
    /* Forward Close of the same connection. */
    send_rr(h, REQ, 5,
            BYTES(0x4e, 2, 0x20, 0x06, 0x24, 0x01, 0x0a, 0x0e, 0x34, 0x12, 1, 0, 0x78, 0x56, 0x34,
                  0x12, 3, 0, 0x20, 0x02, 0x24, 0x01, 0x2c, 0x01));
    send_rr(h, RSP, 5, BYTES(0xce, 0, 0, 0, 0x34, 0x12, 1, 0, 0x78, 0x56, 0x34, 0x12, 0, 0));
    FIELD(h, tx(h, 1), "function_name", "\"forward_close\"");
    FIELD(h, tx(h, 1), "cip.forward_close.connection_serial", "4660");
    check_clean(h);
}

/* ---- framing ----------------------------------------------------------------- */

static void
test_two_messages_one_segment_and_split(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint8 a[64], b[64], all[128];
    gsize na = encap(a, 0x63, 0, 0, 1, NULL, 0);
    gsize nb = encap(b, 0x04, 0, 0, 2, NULL, 0);
    memcpy(all, a, na);
    memcpy(all + na, b, nb);
    /* Two requests in one segment, the second cut in the middle. */
    CU_ASSERT_EQUAL(ots_harness_feed(h, REQ, all, na + 10), OTS_PARSE_NEED_MORE);
    CU_ASSERT_EQUAL(ots_harness_feed(h, REQ, all + na + 10, nb - 10), OTS_PARSE_OK);
    guint8 r[128];
    gsize nr = encap(r, 0x04, 0, 0, 2, NULL, 0);
    ots_harness_feed(h, RSP, r, nr);
    nr = encap(r, 0x63, 0, 0, 1, NULL, 0);
    ots_harness_feed(h, RSP, r, nr);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    FIELD(h, tx(h, 0), "function_name", "\"list_services\"");
    FIELD(h, tx(h, 1), "function_name", "\"list_identity\"");
    check_clean(h);
}

static void
test_byte_by_byte(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint8 b[64];
    gsize n = encap(b, 0x65, 0, 0, 1, BYTES(1, 0, 0, 0));
    for (gsize k = 0; k < n; k++)
        ots_harness_feed(h, REQ, b + k, 1);
    n = encap(b, 0x65, 0x77, 0, 1, BYTES(1, 0, 0, 0));
    for (gsize k = 0; k < n; k++)
        ots_harness_feed(h, RSP, b + k, 1);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    FIELD(h, tx(h, 0), "enip.response.session", "119");
    check_clean(h);
}

static void
test_gap_resync(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint8 b[64];
    gsize n = encap(b, 0x65, 0, 0, 1, BYTES(1, 0, 0, 0));
    ots_harness_feed(h, REQ, b, 10);
    ots_harness_gap(h, REQ, 100);
    /* The tail of a lost message, then a whole ListIdentity request. */
    guint8 s[128];
    memcpy(s, b + 10, n - 10);
    gsize m = encap(s + n - 10, 0x63, 0, 0, 9, NULL, 0);
    ots_harness_feed(h, REQ, s, n - 10 + m);
    m = encap(s, 0x63, 0, 0, 9, NULL, 0);
    ots_harness_feed(h, RSP, s, m);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    FIELD(h, tx(h, 0), "function_name", "\"list_identity\"");
    FIELD(h, tx(h, 0), "status", "\"ok\"");
    check_clean(h);
}

static void
test_unknown_command(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint8 b[64], g[64];
    gsize n = encap(g, 0x1234, 0, 0, 0, BYTES(1, 2, 3, 4));
    ots_harness_feed(h, REQ, g, n);
    CU_ASSERT_EQUAL(alerts(h, "unknown_command"), 1);
    n = encap(b, 0x63, 0, 0, 0, NULL, 0);
    ots_harness_feed(h, REQ, b, n);
    ots_harness_feed(h, RSP, b, n);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_malformed_cpf_and_path(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* CPF item claiming more bytes than the message has. */
    send(h, REQ, 0x6f, 0, 0, 1, BYTES(0, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0xb2, 0, 50, 0, 0x0e));
    CU_ASSERT_EQUAL(alerts(h, "bad_cpf"), 1);
    /* Path size beyond the data. */
    send_rr(h, REQ, 2, BYTES(0x0e, 9, 0x20, 0x01));
    CU_ASSERT_EQUAL(alerts(h, "bad_path"), 1);
    /* Reserved segment type. */
    send_rr(h, REQ, 3, BYTES(0x0e, 1, 0xe0, 0x01));
    CU_ASSERT_EQUAL(alerts(h, "bad_path"), 2);
    /* Reply without the reply bit. */
    send_rr(h, RSP, 3, BYTES(0x0e, 0, 0, 0));
    CU_ASSERT_EQUAL(alerts(h, "bad_cip"), 1);
    /* Non-zero interface handle and options. */
    guint8 m[64];
    gsize n =
        encap(m, 0x6f, 0, 0, 4, BYTES(1, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0xb2, 0, 2, 0, 0x0e, 0));
    m[20] = 1;
    ots_harness_feed(h, REQ, m, n);
    CU_ASSERT_EQUAL(alerts(h, "bad_interface_handle"), 1);
    CU_ASSERT_EQUAL(alerts(h, "bad_options"), 1);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_response_without_request(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_rr(h, RSP, 3, BYTES(0x8e, 0, 0, 0, 1));
    CU_ASSERT_EQUAL(alerts(h, "response_without_request"), 1);
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"no_request\"");
    FIELD(h, i, "cip.service", "14");
    ABSENT(h, i, "enip.request");
    FIELD(h, i, "enip.response.status", "0");
}

static void
test_unanswered_and_bounded(void)
{
    g_autoptr(OtsHarness) h = harness();
    for (guint k = 0; k < 130; k++)
        send_rr(h, REQ, (guint8)k, BYTES(0x0e, 3, 0x20, 0x01, 0x24, 0x01, 0x30, 0x07));
    /* The table holds 128: the two oldest went out as unanswered. */
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    FIELD(h, tx(h, 0), "status", "\"unanswered\"");
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 130);
    check_clean(h);
}

/* ---- memory budget (flows.memcap_mb) ---------------------------------------- */

#define GET_ATTR BYTES(0x0e, 3, 0x20, 0x01, 0x24, 0x01, 0x30, 0x07)
#define GET_ATTR_REPLY BYTES(0x8e, 0, 0, 0, 3, 'A', 'B', 'C')
/* Multiple Service Packet with two Get_Attribute_Single. */
#define MSP                                                                                        \
    BYTES(0x0a, 2, 0x20, 0x02, 0x24, 0x01, 2, 0, 6, 0, 12, 0, 0x0e, 2, 0x20, 0x01, 0x24, 0x01,     \
          0x0e, 2, 0x20, 0x01, 0x24, 0x02)

/* Whatever a kept request charged is refunded: paired, expired, evicted,
 * at flow end. */
static void
test_memcap_balanced(void)
{
    g_autoptr(OtsHarness) h = harness();
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
    send_rr(h, REQ, 5, GET_ATTR);
    gsize one = ots_harness_mem_used(h);
    /* Kept without the Multiple Service Packet entries it does not use. */
    CU_ASSERT(one > 0 && one < 1024);
    send_rr(h, RSP, 5, GET_ATTR_REPLY);
    FIELD(h, tx(h, 0), "status", "\"ok\"");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);

    send_rr(h, REQ, 6, MSP);
    CU_ASSERT(ots_harness_mem_used(h) > one);
    send_rr(h, RSP, 6, BYTES(0x8a, 0, 0, 0, 2, 0, 6, 0, 10, 0, 0x8e, 0, 0, 0, 0x8e, 0, 0, 0));
    FIELD(h, tx(h, 1), "status", "\"ok\"");
    FIELD(h, tx(h, 1), "cip.services.1.instance", "2");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);

    send_rr(h, REQ, 7, GET_ATTR);
    ots_harness_tick(h, T0 + 31 * G_USEC_PER_SEC);
    FIELD(h, tx(h, 2), "status", "\"unanswered\"");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);

    for (guint k = 0; k < 130; k++)
        send_rr(h, REQ, (guint8)k, GET_ATTR);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 5);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 128 * one);
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 133);
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
    send_rr(h, REQ, 5, GET_ATTR);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"unanswered\"");
    FIELD(h, i, "function_name", "\"get_attribute_single\"");
    FIELD(h, i, "cip.attribute", "7");
    FIELD(h, i, "enip.sender_context", "\"0500000000000000\"");
    ABSENT(h, i, "enip.response");
    CU_ASSERT(ots_harness_memcap_refused(h) > 0);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
    send_rr(h, REQ, 6, MSP);
    FIELD(h, tx(h, 1), "status", "\"unanswered\"");
    FIELD(h, tx(h, 1), "cip.service_count", "2");
    /* Its reply then has no request. */
    send_rr(h, RSP, 5, GET_ATTR_REPLY);
    FIELD(h, tx(h, 2), "status", "\"no_request\"");
    CU_ASSERT_EQUAL(alerts(h, "response_without_request"), 1);
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);

    /* UDP discovery alike. */
    g_autoptr(OtsHarness) u = harness_l4(OTS_L4_UDP, 44818);
    ots_harness_set_memcap(u, 1);
    send(u, REQ, 0x63, 0, 0, 1, NULL, 0);
    FIELD(u, tx(u, 0), "function_name", "\"list_identity\"");
    FIELD(u, tx(u, 0), "status", "\"unanswered\"");
    CU_ASSERT_EQUAL(ots_harness_mem_used(u), 0);
}

/* Room for one request: the oldest is let go (unanswered) for the next; a
 * request that still does not fit is reported at once. */
static void
test_memcap_evicts_oldest(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_rr(h, REQ, 1, GET_ATTR);
    gsize one = ots_harness_mem_used(h);
    ots_harness_set_memcap(h, one);
    send_rr(h, REQ, 2, GET_ATTR);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    FIELD(h, tx(h, 0), "status", "\"unanswered\"");
    FIELD(h, tx(h, 0), "enip.sender_context", "\"0100000000000000\"");
    CU_ASSERT(ots_harness_memcap_refused(h) > 0);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), one);
    send_rr(h, RSP, 2, GET_ATTR_REPLY);
    FIELD(h, tx(h, 1), "status", "\"ok\"");
    FIELD(h, tx(h, 1), "enip.sender_context", "\"0200000000000000\"");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);

    /* Larger than the whole budget: the oldest goes, then this one too. */
    send_rr(h, REQ, 3, GET_ATTR);
    send_rr(h, REQ, 4, MSP);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 4);
    FIELD(h, tx(h, 2), "enip.sender_context", "\"0300000000000000\"");
    FIELD(h, tx(h, 2), "status", "\"unanswered\"");
    FIELD(h, tx(h, 3), "enip.sender_context", "\"0400000000000000\"");
    FIELD(h, tx(h, 3), "status", "\"unanswered\"");
    FIELD(h, tx(h, 3), "cip.services.1.instance", "2");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
    check_clean(h);
}

/* ---- connected I/O --------------------------------------------------------- */

static void
io_packet(OtsHarness *h, OtsDirection dir, guint32 conn, guint32 seq)
{
    guint8 b[] = {2, 0, 0x02, 0x80, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xb1, 0, 4, 0, 0, 0, 0xaa, 0xbb};
    for (int i = 0; i < 4; i++) {
        b[6 + i] = (conn >> (8 * i)) & 0xff;
        b[10 + i] = (seq >> (8 * i)) & 0xff;
    }
    ots_harness_feed(h, dir, b, sizeof(b));
}

static void
test_io_counted_per_connection(void)
{
    g_autoptr(OtsHarness) h = harness_l4(OTS_L4_UDP, 2222);
    for (guint32 s = 1; s <= 10; s++)
        io_packet(h, REQ, 0x100, s == 5 ? 50 : s); /* one jump forward */
    for (guint32 s = 100; s < 103; s++)
        io_packet(h, RSP, 0x200, s);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    gint i = tx(h, 0);
    FIELD(h, i, "function_name", "\"connected_io\"");
    FIELD(h, i, "op_class", "\"monitor\"");
    FIELD(h, i, "status", "\"no_response\"");
    FIELD(h, i, "enip.io.connection_id", "256");
    FIELD(h, i, "enip.io.packets", "10");
    FIELD(h, i, "enip.io.first_sequence", "1");
    FIELD(h, i, "enip.io.last_sequence", "50");
    FIELD(h, i, "enip.io.lost", "45");
    FIELD(h, i, "enip.io.out_of_order", "5");
    i = tx(h, 1);
    FIELD(h, i, "enip.io.connection_id", "512");
    FIELD(h, i, "enip.io.packets", "3");
    FIELD(h, i, "enip.io.lost", "0");
    FIELD(h, i, "dst_port", "40000");
    check_clean(h);
}

static void
test_garbage_udp(void)
{
    g_autoptr(OtsHarness) h = harness_l4(OTS_L4_UDP, 44818);
    ots_harness_feed(h, REQ, BYTES(1, 2, 3));
    CU_ASSERT_EQUAL(alerts(h, "bad_header"), 1);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

/* Every prefix and every single-byte corruption of a valid exchange must
 * parse without crashing and give only valid events. */
static void
test_mutations(void)
{
    guint8 body[128], msg[160];
    gsize nb = rr_body(body, BYTES(0x0a, 2, 0x20, 0x02, 0x24, 0x01, 2, 0, 6, 0, 14, 0, 0x0e, 3,
                                   0x20, 0x01, 0x24, 0x01, 0x30, 0x07, 0x4c, 2, 0x91, 1, 'X', 0));
    gsize n = encap(msg, 0x6f, 1, 0, 0, body, nb);
    for (gsize pos = 0; pos < n; pos++) {
        for (guint v = 0; v < 256; v += 51) {
            g_autoptr(OtsHarness) h = harness();
            guint8 m[160];
            memcpy(m, msg, n);
            m[pos] ^= (guint8)(v | 1);
            ots_harness_feed(h, REQ, m, n);
            ots_harness_feed(h, RSP, m, pos + 1);
            ots_harness_end(h);
            CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
        }
    }
}

static CU_TestInfo enip_tests[] = {
    {"descriptor", test_descriptor},
    {"probe", test_probe},
    {"list_identity", test_list_identity},
    {"list_identity_udp", test_list_identity_udp},
    {"truncated_identity", test_truncated_identity},
    {"register_session", test_register_session},
    {"session_mismatch", test_session_mismatch},
    {"encap_error_status", test_encap_error_status},
    {"list_services", test_list_services},
    {"get_attribute_single", test_get_attribute_single},
    {"cip_error", test_cip_error},
    {"op_classes", test_op_classes},
    {"symbolic_read_tag", test_symbolic_read_tag},
    {"16bit_segments", test_16bit_segments},
    {"multiple_service_packet", test_multiple_service_packet},
    {"msp_bad_offset", test_msp_bad_offset},
    {"unconnected_send", test_unconnected_send},
    {"forward_open", test_forward_open},
    {"two_messages_and_split", test_two_messages_one_segment_and_split},
    {"byte_by_byte", test_byte_by_byte},
    {"gap_resync", test_gap_resync},
    {"unknown_command", test_unknown_command},
    {"malformed_cpf_and_path", test_malformed_cpf_and_path},
    {"response_without_request", test_response_without_request},
    {"unanswered_and_bounded", test_unanswered_and_bounded},
    {"memcap_balanced", test_memcap_balanced},
    {"memcap_refused", test_memcap_refused},
    {"memcap_evicts_oldest", test_memcap_evicts_oldest},
    {"io_counted_per_connection", test_io_counted_per_connection},
    {"garbage_udp", test_garbage_udp},
    {"mutations", test_mutations},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES                                                                            \
    {                                                                                              \
        "enip", NULL, NULL, NULL, NULL, enip_tests                                                 \
    }
#include "cunit-main.h"
