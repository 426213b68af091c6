/* SPDX-License-Identifier: Apache-2.0 */

/* BACnet/IP dissector tests: hand-built datagrams fed through the dissector
 * harness exactly as the pipeline feeds UDP, events checked field by field. */

#include <stdio.h>
#include <CUnit/CUnit.h>
#include <otsensor/dissector.h>
#include "core/dissect/harness.h"
#include "dissector-test.h"

const OtsPluginHeader *ots_plugin_get_info(void);

#define A OTS_DIR_TO_SERVER /* from the flow's client */
#define B OTS_DIR_TO_CLIENT /* from the flow's server */
#define T0 ((gint64)1700000000 * G_USEC_PER_SEC)
#define MAX_LISTED 64 /* segments and segment ACKs listed per message */

#define BYTES(...) (const guint8[]){__VA_ARGS__}, sizeof((const guint8[]){__VA_ARGS__})

static const OtsDissectorInfo *
bacnet(void)
{
    return (const OtsDissectorInfo *)ots_plugin_get_info();
}

static OtsHarness *
harness(void)
{
    OtsHarness *h = ots_harness_new(bacnet(), OTS_L4_UDP, 47808);
    ots_harness_set_time(h, T0);
    return h;
}

/* BVLC function @fn + @payload as one datagram. */
static OtsParseResult
send_bvlc(OtsHarness *h, OtsDirection dir, guint8 fn, const guint8 *payload, gsize n)
{
    guint8 buf[2048];
    g_assert(n + 4 <= sizeof(buf));
    buf[0] = 0x81;
    buf[1] = fn;
    buf[2] = (guint8)((n + 4) >> 8);
    buf[3] = (guint8)((n + 4) & 0xff);
    if (n)
        memcpy(buf + 4, payload, n); /* payload may be NULL when n is 0 */
    return ots_harness_feed(h, dir, buf, n + 4);
}

/* An APDU in a local NPDU (no routing) in an Original-Unicast-NPDU. */
static OtsParseResult
send_apdu(OtsHarness *h, OtsDirection dir, const guint8 *apdu, gsize n)
{
    guint8 buf[2048];
    g_assert(n + 2 <= sizeof(buf));
    buf[0] = 0x01;
    buf[1] = (apdu[0] >> 4) == 0 ? 0x04 : 0x00;
    memcpy(buf + 2, apdu, n);
    return send_bvlc(h, dir, 0x0a, buf, n + 2);
}

static gint
tx(OtsHarness *h, guint nth)
{
    return ots_harness_find(h, "transaction", nth);
}

static gint
asset(OtsHarness *h, guint nth)
{
    return ots_harness_find(h, "asset", nth);
}

/* ---- descriptor and probe ---------------------------------------------- */

static void
test_descriptor(void)
{
    const OtsDissectorInfo *info = bacnet();
    CU_ASSERT_EQUAL(info->abi_major, OTS_DISSECTOR_ABI_MAJOR);
    CU_ASSERT_EQUAL(info->kind, OTS_PLUGIN_KIND_DISSECTOR);
    CU_ASSERT_STRING_EQUAL(info->name, "bacnet");
    CU_ASSERT_PTR_NULL(info->tcp_ports);
    CU_ASSERT_PTR_NOT_NULL_FATAL(info->udp_ports);
    CU_ASSERT_EQUAL(info->udp_ports[0], 47808);
    CU_ASSERT_EQUAL(info->udp_ports[1], 0);
    CU_ASSERT_PTR_NOT_NULL(info->parse);
    CU_ASSERT_PTR_NOT_NULL(info->flow_end);
    CU_ASSERT_PTR_NOT_NULL(info->tick);
}

static void
test_probe(void)
{
    const OtsDissectorInfo *info = bacnet();
    const guint8 who_is[] = {0x81, 0x0b, 0x00, 0x08, 0x01, 0x00, 0x10, 0x08};
    const guint8 bad_len[] = {0x81, 0x0b, 0x00, 0x09, 0x01, 0x00, 0x10, 0x08};
    const guint8 bad_type[] = {0x82, 0x0b, 0x00, 0x08, 0x01, 0x00, 0x10, 0x08};
    const guint8 bad_version[] = {0x81, 0x0b, 0x00, 0x08, 0x02, 0x00, 0x10, 0x08};
    const guint8 result[] = {0x81, 0x00, 0x00, 0x06, 0x00, 0x00};
    OtsReader r;
    ots_reader_init(&r, who_is, sizeof(who_is));
    CU_ASSERT_EQUAL(info->probe(&r, OTS_DIR_TO_SERVER, OTS_L4_UDP), OTS_PROBE_YES);
    CU_ASSERT_EQUAL(info->probe(&r, OTS_DIR_TO_SERVER, OTS_L4_TCP), OTS_PROBE_NO);
    ots_reader_init(&r, result, sizeof(result));
    CU_ASSERT_EQUAL(info->probe(&r, OTS_DIR_TO_CLIENT, OTS_L4_UDP), OTS_PROBE_YES);
    ots_reader_init(&r, bad_len, sizeof(bad_len));
    CU_ASSERT_EQUAL(info->probe(&r, OTS_DIR_TO_SERVER, OTS_L4_UDP), OTS_PROBE_NO);
    ots_reader_init(&r, bad_type, sizeof(bad_type));
    CU_ASSERT_EQUAL(info->probe(&r, OTS_DIR_TO_SERVER, OTS_L4_UDP), OTS_PROBE_NO);
    ots_reader_init(&r, bad_version, sizeof(bad_version));
    CU_ASSERT_EQUAL(info->probe(&r, OTS_DIR_TO_SERVER, OTS_L4_UDP), OTS_PROBE_NO);
    ots_reader_init(&r, who_is, 3);
    CU_ASSERT_EQUAL(info->probe(&r, OTS_DIR_TO_SERVER, OTS_L4_UDP), OTS_PROBE_NO);
}

/* ---- confirmed services ------------------------------------------------ */

static void
test_read_property(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* ReadProperty analog-input 1 present-value, invoke id 1 */
    send_apdu(h, A, BYTES(0x00, 0x05, 0x01, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x55));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    ots_harness_set_time(h, T0 + 2500);
    send_apdu(h, B,
              BYTES(0x30, 0x01, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x55, 0x3e, 0x44, 0x42,
                    0x28, 0x00, 0x00, 0x3f));
    gint i = tx(h, 0);
    FIELD(h, i, "proto", "\"bacnet\"");
    FIELD(h, i, "function", "12");
    FIELD(h, i, "function_name", "\"read_property\"");
    FIELD(h, i, "op_class", "\"read\"");
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "latency_us", "2500");
    FIELD(h, i, "bacnet.layer", "\"application\"");
    FIELD(h, i, "bacnet.request.bvlc_function", "10");
    FIELD(h, i, "bacnet.request.bvlc_function_name", "\"original_unicast_npdu\"");
    FIELD(h, i, "bacnet.request.npdu.expecting_reply", "true");
    FIELD(h, i, "bacnet.request.apdu_type", "0");
    FIELD(h, i, "bacnet.request.invoke_id", "1");
    ABSENT(h, i, "bacnet.request.service"); /* the event's function */
    FIELD(h, i, "bacnet.request.max_apdu_length_accepted", "1476");
    FIELD(h, i, "bacnet.request.object_type", "0");
    FIELD(h, i, "bacnet.request.object_type_name", "\"analog_input\"");
    FIELD(h, i, "bacnet.request.object_instance", "1");
    FIELD(h, i, "bacnet.request.property_id", "85");
    FIELD(h, i, "bacnet.request.property", "\"present_value\"");
    ABSENT(h, i, "bacnet.request.array_index");
    FIELD(h, i, "bacnet.response.apdu_type", "3");
    FIELD(h, i, "bacnet.response.apdu_type_name", "\"complex_ack\"");
    /* what pairs the answer with the request is not repeated */
    ABSENT(h, i, "bacnet.response.invoke_id");
    ABSENT(h, i, "bacnet.response.service");
    ABSENT(h, i, "bacnet.response.service_name");
    ABSENT(h, i, "bacnet.response.object_type");
    ABSENT(h, i, "bacnet.response.object_instance");
    ABSENT(h, i, "bacnet.response.property_id");
    ABSENT(h, i, "bacnet.response.property");
    FIELD(h, i, "bacnet.response.value_type", "\"real\"");
    FIELD(h, i, "bacnet.response.value", "42");
    CU_ASSERT_EQUAL(ots_harness_count(h, "asset"), 0);
    check_clean(h);
}

static void
test_read_property_other_answer(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* ReadProperty analog-input 1 present-value, answered for analog-input 2
     * present-value [index 3]: the answer names what it answers */
    send_apdu(h, A, BYTES(0x00, 0x05, 0x01, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x55));
    send_apdu(h, B,
              BYTES(0x30, 0x01, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x02, 0x19, 0x55, 0x29, 0x03, 0x3e,
                    0x44, 0x42, 0x28, 0x00, 0x00, 0x3f));
    gint i = tx(h, 0);
    FIELD(h, i, "bacnet.request.object_instance", "1");
    ABSENT(h, i, "bacnet.request.array_index");
    ABSENT(h, i, "bacnet.response.invoke_id");
    ABSENT(h, i, "bacnet.response.service");
    FIELD(h, i, "bacnet.response.object_type_name", "\"analog_input\"");
    FIELD(h, i, "bacnet.response.object_instance", "2");
    FIELD(h, i, "bacnet.response.property", "\"present_value\"");
    FIELD(h, i, "bacnet.response.array_index", "3");
    FIELD(h, i, "bacnet.response.value", "42");
    /* an answer whose request was not seen names everything */
    send_apdu(h, B,
              BYTES(0x30, 0x07, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x02, 0x19, 0x55, 0x3e, 0x44, 0x42,
                    0x28, 0x00, 0x00, 0x3f));
    i = tx(h, 1);
    FIELD(h, i, "status", "\"no_request\"");
    FIELD(h, i, "bacnet.response.invoke_id", "7");
    FIELD(h, i, "bacnet.response.service", "12");
    FIELD(h, i, "bacnet.response.object_instance", "2");
    FIELD(h, i, "bacnet.response.property_id", "85");
}

static void
test_read_property_device_facts(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* device 1234 vendor-name [array index 0 just to exercise it] */
    send_apdu(h, A, BYTES(0x00, 0x05, 0x02, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x79));
    send_apdu(h, B,
              BYTES(0x30, 0x02, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x79, 0x3e, 0x75, 0x05,
                    0x00, 'A', 'C', 'M', 'E', 0x3f));
    gint i = tx(h, 0);
    FIELD(h, i, "bacnet.request.object_type_name", "\"device\"");
    FIELD(h, i, "bacnet.request.object_instance", "1234");
    FIELD(h, i, "bacnet.response.value", "\"ACME\"");
    gint a = asset(h, 0);
    FIELD(h, a, "vendor", "\"ACME\"");
    FIELD(h, a, "bacnet.device_instance", "1234");
    FIELD(h, a, "role", "\"controller\"");
    check_clean(h);
}

static void
test_read_property_multiple(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_apdu(h, A,
              BYTES(0x00, 0x05, 0x03, 0x0e, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x1e, 0x09, 0x4d, 0x09,
                    0x46, 0x19, 0x02, 0x1f));
    send_apdu(h, B,
              BYTES(0x30, 0x03, 0x0e, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x1e, 0x29, 0x4d, 0x4e, 0x74,
                    0x00, 'D', 'e', 'v', 0x4f, 0x29, 0x46, 0x39, 0x02, 0x5e, 0x91, 0x02, 0x91, 0x20,
                    0x5f, 0x1f));
    gint i = tx(h, 0);
    FIELD(h, i, "function_name", "\"read_property_multiple\"");
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "bacnet.request.objects.0.object_type", "8");
    FIELD(h, i, "bacnet.request.objects.0.object_instance", "1234");
    FIELD(h, i, "bacnet.request.objects.0.properties.0.property_id", "77");
    FIELD(h, i, "bacnet.request.objects.0.properties.1.property", "\"model_name\"");
    FIELD(h, i, "bacnet.request.objects.0.properties.1.array_index", "2");
    FIELD(h, i, "bacnet.response.objects.0.properties.0.value", "\"Dev\"");
    FIELD(h, i, "bacnet.response.objects.0.properties.1.array_index", "2");
    FIELD(h, i, "bacnet.response.objects.0.properties.1.error_class_name", "\"property\"");
    FIELD(h, i, "bacnet.response.objects.0.properties.1.error_code", "32");
    gint a = asset(h, 0);
    FIELD(h, a, "name", "\"Dev\"");
    ABSENT(h, a, "model");
    check_clean(h);
}

static void
test_write_property(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* analog-output 1 present-value := 100.0 at priority 8 */
    send_apdu(h, A,
              BYTES(0x00, 0x05, 0x04, 0x0f, 0x0c, 0x00, 0x40, 0x00, 0x01, 0x19, 0x55, 0x3e, 0x44,
                    0x42, 0xc8, 0x00, 0x00, 0x3f, 0x49, 0x08));
    send_apdu(h, B, BYTES(0x20, 0x04, 0x0f));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "15");
    FIELD(h, i, "op_class", "\"write\"");
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "bacnet.request.object_type_name", "\"analog_output\"");
    FIELD(h, i, "bacnet.request.value", "100");
    FIELD(h, i, "bacnet.request.priority", "8");
    FIELD(h, i, "bacnet.response.apdu_type_name", "\"simple_ack\"");
    ABSENT(h, i, "bacnet.response.service"); /* the request's */
    check_clean(h);

    /* priority 17 is out of range */
    send_apdu(h, A,
              BYTES(0x00, 0x05, 0x05, 0x0f, 0x0c, 0x00, 0x40, 0x00, 0x01, 0x19, 0x55, 0x3e, 0x21,
                    0x01, 0x3f, 0x49, 0x11));
    send_apdu(h, B, BYTES(0x20, 0x05, 0x0f));
    CU_ASSERT_EQUAL(alerts(h, "bad_value"), 1);
}

/* A finished request's memory serves the next one (bacnet.c keeps one):
 * nothing of the earlier request may show in the later ones, whatever
 * their sizes (a body over the kept bound is not kept). */
static void
test_request_memory_reused(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* write property with a long body, then a short read property */
    send_apdu(h, A,
              BYTES(0x00, 0x05, 0x04, 0x0f, 0x0c, 0x00, 0x40, 0x00, 0x01, 0x19, 0x55, 0x3e, 0x44,
                    0x42, 0xc8, 0x00, 0x00, 0x3f, 0x49, 0x08));
    send_apdu(h, B, BYTES(0x20, 0x04, 0x0f));
    send_apdu(h, A, BYTES(0x02, 0x03, 0x01, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x55));
    send_apdu(h, B,
              BYTES(0x30, 0x01, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x55, 0x3e, 0x44, 0x42,
                    0x28, 0x00, 0x00, 0x3f));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    gint i = tx(h, 1);
    FIELD(h, i, "function_name", "\"read_property\"");
    FIELD(h, i, "bacnet.request.invoke_id", "1");
    FIELD(h, i, "bacnet.request.max_apdu_length_accepted", "480");
    FIELD(h, i, "bacnet.request.segmented_response_accepted", "true");
    FIELD(h, i, "bacnet.request.object_type_name", "\"analog_input\"");
    ABSENT(h, i, "bacnet.request.value");
    ABSENT(h, i, "bacnet.request.priority");
    FIELD(h, i, "bacnet.response.value", "42");

    /* a 300-byte character string value: over the kept bound */
    guint8 big[320] = {0x00, 0x05, 0x06, 0x0f, 0x0c, 0x00, 0x40, 0x00, 0x01,
                       0x19, 0x4d, 0x3e, 0x75, 0xfe, 0x01, 0x2d, 0x00};
    gsize n = 17;
    memset(big + n, 'a', 300);
    n += 300;
    big[n++] = 0x3f;
    send_apdu(h, A, big, n);
    send_apdu(h, B, BYTES(0x20, 0x06, 0x0f));
    send_apdu(h, A, BYTES(0x00, 0x05, 0x07, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x02, 0x19, 0x55));
    send_apdu(h, B, BYTES(0x20, 0x07, 0x0c));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 4);
    i = tx(h, 2);
    FIELD(h, i, "bacnet.request.property", "\"object_name\"");
    char want[259]; /* string values are cut at 256 bytes */
    want[0] = '"';
    memset(want + 1, 'a', 256);
    want[257] = '"';
    want[258] = 0;
    FIELD(h, i, "bacnet.request.value", want);
    i = tx(h, 3);
    FIELD(h, i, "bacnet.request.invoke_id", "7");
    FIELD(h, i, "bacnet.request.object_instance", "2");
    FIELD(h, i, "bacnet.request.max_apdu_length_accepted", "1476");
    FIELD(h, i, "bacnet.request.segmented_response_accepted", "false");
    ABSENT(h, i, "bacnet.request.value");
}

static void
test_write_property_multiple(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_apdu(h, A,
              BYTES(0x00, 0x05, 0x06, 0x10, 0x0c, 0x01, 0x40, 0x00, 0x02, 0x1e, 0x09, 0x55, 0x2e,
                    0x91, 0x01, 0x2f, 0x39, 0x0a, 0x1f));
    send_apdu(h, B, BYTES(0x20, 0x06, 0x10));
    gint i = tx(h, 0);
    FIELD(h, i, "function_name", "\"write_property_multiple\"");
    FIELD(h, i, "op_class", "\"write\"");
    FIELD(h, i, "bacnet.request.objects.0.object_type_name", "\"binary_value\"");
    FIELD(h, i, "bacnet.request.objects.0.object_instance", "2");
    FIELD(h, i, "bacnet.request.objects.0.properties.0.value_type", "\"enumerated\"");
    FIELD(h, i, "bacnet.request.objects.0.properties.0.value", "1");
    FIELD(h, i, "bacnet.request.objects.0.properties.0.priority", "10");
    check_clean(h);
}

static void
test_error_reject_abort(void)
{
    g_autoptr(OtsHarness) h = harness();
    const guint8 rp[] = {0x00, 0x05, 0x00, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x55};
    guint8 req[sizeof(rp)];
    memcpy(req, rp, sizeof(rp));

    req[2] = 0x07;
    send_apdu(h, A, req, sizeof(req));
    send_apdu(h, B, BYTES(0x50, 0x07, 0x0c, 0x91, 0x02, 0x91, 0x20));
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"exception\"");
    FIELD(h, i, "bacnet.response.apdu_type_name", "\"error\"");
    FIELD(h, i, "bacnet.response.error_class", "2");
    FIELD(h, i, "bacnet.response.error_class_name", "\"property\"");
    FIELD(h, i, "bacnet.response.error_code", "32");

    req[2] = 0x08;
    send_apdu(h, A, req, sizeof(req));
    send_apdu(h, B, BYTES(0x60, 0x08, 0x09));
    i = tx(h, 1);
    FIELD(h, i, "status", "\"exception\"");
    FIELD(h, i, "bacnet.response.reject_reason", "9");
    FIELD(h, i, "bacnet.response.reject_reason_name", "\"unrecognized_service\"");

    req[2] = 0x09;
    send_apdu(h, A, req, sizeof(req));
    send_apdu(h, B, BYTES(0x71, 0x09, 0x04));
    i = tx(h, 2);
    FIELD(h, i, "status", "\"exception\"");
    FIELD(h, i, "bacnet.response.abort_reason_name", "\"segmentation_not_supported\"");
    FIELD(h, i, "bacnet.response.sent_by_server", "true");

    /* a client abort (SRV clear) ends the client's own request */
    req[2] = 0x0a;
    send_apdu(h, A, req, sizeof(req));
    send_apdu(h, A, BYTES(0x70, 0x0a, 0x00));
    i = tx(h, 3);
    FIELD(h, i, "status", "\"exception\"");
    FIELD(h, i, "bacnet.response.sent_by_server", "false");
    FIELD(h, i, "bacnet.request.invoke_id", "10");
    check_clean(h);
}

static void
test_reinitialize_and_dcc(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_apdu(
        h, A,
        BYTES(0x00, 0x05, 0x0b, 0x14, 0x09, 0x00, 0x1d, 0x07, 0x00, 's', 'e', 'c', 'r', 'e', 't'));
    send_apdu(h, B, BYTES(0x20, 0x0b, 0x14));
    gint i = tx(h, 0);
    FIELD(h, i, "op_class", "\"restart\"");
    FIELD(h, i, "bacnet.request.reinitialized_state_name", "\"coldstart\"");
    FIELD(h, i, "bacnet.request.password_present", "true");
    CU_ASSERT_PTR_NULL(strstr(ots_harness_event(h, (guint)i), "secret"));

    send_apdu(h, A,
              BYTES(0x00, 0x05, 0x0c, 0x11, 0x09, 0x05, 0x19, 0x01, 0x2c, 0x00, 'p', 'w', 'd'));
    send_apdu(h, B, BYTES(0x20, 0x0c, 0x11));
    i = tx(h, 1);
    FIELD(h, i, "function_name", "\"device_communication_control\"");
    FIELD(h, i, "op_class", "\"communication_control\"");
    FIELD(h, i, "bacnet.request.time_duration", "5");
    FIELD(h, i, "bacnet.request.enable_disable_name", "\"disable\"");
    FIELD(h, i, "bacnet.request.password_present", "true");
    CU_ASSERT_PTR_NULL(strstr(ots_harness_event(h, (guint)i), "pwd"));

    /* without a password */
    send_apdu(h, A, BYTES(0x00, 0x05, 0x0d, 0x14, 0x09, 0x01));
    send_apdu(h, B, BYTES(0x20, 0x0d, 0x14));
    FIELD(h, tx(h, 2), "bacnet.request.password_present", "false");
    FIELD(h, tx(h, 2), "bacnet.request.reinitialized_state_name", "\"warmstart\"");
    check_clean(h);
}

static void
test_atomic_files(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_apdu(h, A,
              BYTES(0x00, 0x05, 0x0e, 0x06, 0xc4, 0x02, 0x80, 0x00, 0x01, 0x0e, 0x31, 0x00, 0x22,
                    0x01, 0x00, 0x0f));
    send_apdu(h, B, BYTES(0x30, 0x0e, 0x06, 0x11, 0x0e, 0x31, 0x00, 0x63, 'a', 'b', 'c', 0x0f));
    gint i = tx(h, 0);
    FIELD(h, i, "op_class", "\"file_transfer\"");
    FIELD(h, i, "bacnet.request.object_type_name", "\"file\"");
    FIELD(h, i, "bacnet.request.access", "\"stream\"");
    FIELD(h, i, "bacnet.request.start_position", "0");
    FIELD(h, i, "bacnet.request.requested_octet_count", "256");
    FIELD(h, i, "bacnet.response.end_of_file", "true");
    FIELD(h, i, "bacnet.response.data_length", "3");

    send_apdu(h, A,
              BYTES(0x00, 0x05, 0x0f, 0x07, 0xc4, 0x02, 0x80, 0x00, 0x01, 0x0e, 0x31, 0x10, 0x62,
                    0x01, 0x02, 0x0f));
    send_apdu(h, B, BYTES(0x30, 0x0f, 0x07, 0x09, 0x10));
    i = tx(h, 1);
    FIELD(h, i, "function_name", "\"atomic_write_file\"");
    FIELD(h, i, "bacnet.request.start_position", "16");
    FIELD(h, i, "bacnet.request.data_length", "2");
    FIELD(h, i, "bacnet.response.start_position", "16");

    /* record access, negative start */
    send_apdu(h, A,
              BYTES(0x00, 0x05, 0x10, 0x06, 0xc4, 0x02, 0x80, 0x00, 0x01, 0x1e, 0x31, 0xff, 0x21,
                    0x02, 0x1f));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2); /* not answered yet */
    ots_harness_end(h);
    i = tx(h, 2);
    FIELD(h, i, "status", "\"unanswered\"");
    FIELD(h, i, "bacnet.request.access", "\"record\"");
    FIELD(h, i, "bacnet.request.start_record", "-1");
    FIELD(h, i, "bacnet.request.record_count", "2");
    check_clean(h);
}

/* A confirmed request with no service data at all (its body is empty, no
 * buffer behind it): walked at flow end, the missing fields are reported.
 * Found by fuzz-dissector-bacnet under UBSan (pointer arithmetic on NULL). */
static void
test_request_without_service_data(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_apdu(h, A, BYTES(0x00, 0x05, 0x11, 0x06)); /* AtomicReadFile, nothing more */
    ots_harness_end(h);
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"unanswered\"");
    FIELD(h, i, "function_name", "\"atomic_read_file\"");
    CU_ASSERT(ots_harness_count(h, "alert") >= 1);
}

static void
test_subscribe_cov_and_notifications(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_apdu(h, A,
              BYTES(0x00, 0x05, 0x11, 0x05, 0x09, 0x12, 0x1c, 0x00, 0x00, 0x00, 0x01, 0x29, 0x01,
                    0x39, 0x3c));
    send_apdu(h, B, BYTES(0x20, 0x11, 0x05));
    gint i = tx(h, 0);
    FIELD(h, i, "function_name", "\"subscribe_cov\"");
    FIELD(h, i, "op_class", "\"monitor\"");
    FIELD(h, i, "bacnet.request.process_id", "18");
    FIELD(h, i, "bacnet.request.issue_confirmed_notifications", "true");
    FIELD(h, i, "bacnet.request.lifetime", "60");
    FIELD(h, i, "bacnet.request.cancellation", "false");

    send_apdu(h, B,
              BYTES(0x10, 0x02, 0x09, 0x12, 0x1c, 0x02, 0x00, 0x04, 0xd2, 0x2c, 0x00, 0x00, 0x00,
                    0x01, 0x39, 0x3c, 0x4e, 0x09, 0x55, 0x2e, 0x44, 0x42, 0x28, 0x00, 0x00, 0x2f,
                    0x09, 0x6f, 0x2e, 0x82, 0x04, 0x00, 0x2f, 0x4f));
    i = tx(h, 1);
    FIELD(h, i, "function", "2");
    FIELD(h, i, "function_name", "\"unconfirmed_cov_notification\"");
    FIELD(h, i, "status", "\"unsolicited\"");
    FIELD(h, i, "src_ip", "\"127.0.0.2\"");
    FIELD(h, i, "bacnet.request.apdu_type", "1");
    FIELD(h, i, "bacnet.request.initiating_device_instance", "1234");
    FIELD(h, i, "bacnet.request.object_type_name", "\"analog_input\"");
    FIELD(h, i, "bacnet.request.values.0.property", "\"present_value\"");
    FIELD(h, i, "bacnet.request.values.0.value", "42");
    FIELD(h, i, "bacnet.request.values.1.property", "\"status_flags\"");
    FIELD(h, i, "bacnet.request.values.1.value", "\"0400\"");
    ABSENT(h, i, "bacnet.response");
    check_clean(h);
}

/* ---- unconfirmed services ---------------------------------------------- */

static void
test_who_is_i_am(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_apdu(h, A, BYTES(0x10, 0x08, 0x09, 0x00, 0x1a, 0x27, 0x10));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "8");
    FIELD(h, i, "function_name", "\"who_is\"");
    FIELD(h, i, "op_class", "\"discovery\"");
    FIELD(h, i, "status", "\"no_response\"");
    FIELD(h, i, "bacnet.request.low_limit", "0");
    FIELD(h, i, "bacnet.request.high_limit", "10000");
    ABSENT(h, i, "latency_us");

    send_apdu(
        h, B,
        BYTES(0x10, 0x00, 0xc4, 0x02, 0x00, 0x04, 0xd2, 0x22, 0x05, 0xc4, 0x91, 0x00, 0x21, 0x07));
    i = tx(h, 1);
    FIELD(h, i, "function_name", "\"i_am\"");
    FIELD(h, i, "bacnet.request.object_instance", "1234");
    FIELD(h, i, "bacnet.request.max_apdu_length_accepted", "1476");
    FIELD(h, i, "bacnet.request.segmentation_supported_name", "\"both\"");
    FIELD(h, i, "bacnet.request.vendor_id", "7");
    gint a = asset(h, 0);
    FIELD(h, a, "ip", "\"127.0.0.2\"");
    FIELD(h, a, "vendor_id", "7");
    FIELD(h, a, "bacnet.device_instance", "1234");
    FIELD(h, a, "bacnet.max_apdu_length_accepted", "1476");

    /* who-is with only a low limit is malformed */
    send_apdu(h, A, BYTES(0x10, 0x08, 0x09, 0x00));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
    CU_ASSERT_EQUAL(alerts(h, "bad_length"), 1);
}

static void
test_who_has_i_have_time_sync(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_apdu(h, A, BYTES(0x10, 0x07, 0x3d, 0x05, 0x00, 'Z', 'o', 'n', 'e'));
    FIELD(h, tx(h, 0), "function_name", "\"who_has\"");
    FIELD(h, tx(h, 0), "bacnet.request.object_name", "\"Zone\"");
    send_apdu(h, B,
              BYTES(0x10, 0x01, 0xc4, 0x02, 0x00, 0x04, 0xd2, 0xc4, 0x00, 0x00, 0x00, 0x03, 0x75,
                    0x05, 0x00, 'Z', 'o', 'n', 'e'));
    FIELD(h, tx(h, 1), "function_name", "\"i_have\"");
    FIELD(h, tx(h, 1), "bacnet.request.device_instance", "1234");
    FIELD(h, tx(h, 1), "bacnet.request.object_instance", "3");
    FIELD(h, tx(h, 1), "bacnet.request.object_name", "\"Zone\"");
    send_apdu(h, A, BYTES(0x10, 0x06, 0xa4, 124, 1, 15, 1, 0xb4, 10, 30, 0, 0));
    FIELD(h, tx(h, 2), "function_name", "\"time_synchronization\"");
    FIELD(h, tx(h, 2), "op_class", "\"time_set\"");
    FIELD(h, tx(h, 2), "bacnet.request.date", "\"2024-01-15\"");
    FIELD(h, tx(h, 2), "bacnet.request.time", "\"10:30:00.00\"");
    send_apdu(h, A, BYTES(0x10, 0x09, 0xa4, 0xff, 0xff, 0xff, 0xff, 0xb4, 0xff, 0, 0, 0));
    FIELD(h, tx(h, 3), "function_name", "\"utc_time_synchronization\"");
    FIELD(h, tx(h, 3), "bacnet.request.date", "\"*-*-*\"");
    check_clean(h);
}

/* ---- segmentation ------------------------------------------------------ */

/* Segment ACK: @nak, @srv flags, invoke id, sequence number, actual window. */
static void
send_segment_ack(OtsHarness *h, OtsDirection dir, gboolean nak, gboolean srv, guint8 invoke,
                 guint8 seq, guint8 window)
{
    guint8 apdu[] = {(guint8)(0x40 | (nak ? 0x02 : 0) | (srv ? 0x01 : 0)), invoke, seq, window};
    send_apdu(h, dir, apdu, sizeof(apdu));
}

static void
at(OtsHarness *h, gint64 offset_us)
{
    ots_harness_set_time(h, T0 + offset_us);
}

static void
test_segmented_complex_ack(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* ReadProperty device 1234 object-list, segmented response accepted */
    send_apdu(h, A, BYTES(0x02, 0x75, 0x10, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x4c));
    at(h, 1000);
    send_apdu(h, B,
              BYTES(0x3c, 0x10, 0x00, 0x04, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x4c, 0x3e,
                    0xc4, 0x02));
    at(h, 2000);
    send_segment_ack(h, A, FALSE, FALSE, 0x10, 0, 4);
    /* a retransmitted segment 0 is listed, and changes nothing */
    at(h, 3000);
    send_apdu(h, B,
              BYTES(0x3c, 0x10, 0x00, 0x04, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x4c, 0x3e,
                    0xc4, 0x02));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    at(h, 7000);
    send_apdu(
        h, B,
        BYTES(0x38, 0x10, 0x01, 0x04, 0x0c, 0x00, 0x04, 0xd2, 0xc4, 0x00, 0x00, 0x00, 0x01, 0x3f));
    /* complete, but the client's ACK of the last segment is still to come */
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    at(h, 8000);
    send_segment_ack(h, A, FALSE, FALSE, 0x10, 1, 4);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "latency_us", "7000"); /* to the last segment */
    FIELD(h, i, "bacnet.request.segmented_response_accepted", "true");
    ABSENT(h, i, "bacnet.request.segments");
    ABSENT(h, i, "bacnet.request.segment_acks");
    FIELD(h, i, "bacnet.response.segment_count", "3");
    FIELD(h, i, "bacnet.response.segments",
          "[{\"offset_us\":1000,\"sequence_number\":0,\"window_size\":4,\"more_follows\":true},"
          "{\"offset_us\":3000,\"sequence_number\":0,\"window_size\":4,\"more_follows\":true},"
          "{\"offset_us\":7000,\"sequence_number\":1,\"window_size\":4,\"more_follows\":false}]");
    ABSENT(h, i, "bacnet.response.segments_truncated");
    FIELD(h, i, "bacnet.response.segment_ack_count", "2");
    FIELD(h, i, "bacnet.response.segment_acks",
          "[{\"offset_us\":2000,\"bvlc_function\":10,\"sequence_number\":0,\"window_size\":4,"
          "\"negative_ack\":false,\"sent_by_server\":false},"
          "{\"offset_us\":8000,\"bvlc_function\":10,\"sequence_number\":1,\"window_size\":4,"
          "\"negative_ack\":false,\"sent_by_server\":false}]");
    FIELD(h, i, "bacnet.request.property", "\"object_list\"");
    ABSENT(h, i, "bacnet.response.property");
    FIELD(h, i, "bacnet.response.value_count", "2");
    FIELD(h, i, "bacnet.response.value.object_type_name", "\"device\"");
    FIELD(h, i, "bacnet.response.value.object_instance", "1234");
    ABSENT(h, i, "bacnet.response.incomplete");
    check_clean(h);
}

static void
test_segmented_request(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* WriteProperty in two segments; the server acknowledges each */
    send_apdu(h, A, BYTES(0x0c, 0x05, 0x20, 0x00, 0x02, 0x0f, 0x0c, 0x00, 0x40, 0x00, 0x01, 0x19));
    at(h, 100);
    send_segment_ack(h, B, FALSE, TRUE, 0x20, 0, 2);
    at(h, 200);
    send_apdu(h, A, BYTES(0x08, 0x05, 0x20, 0x01, 0x02, 0x0f, 0x55, 0x3e, 0x21, 0x05, 0x3f));
    at(h, 300);
    send_segment_ack(h, B, FALSE, TRUE, 0x20, 1, 2);
    at(h, 500);
    send_apdu(h, B, BYTES(0x20, 0x20, 0x0f));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "latency_us", "500");
    FIELD(h, i, "bacnet.request.segmented_response_accepted", "false");
    FIELD(h, i, "bacnet.request.segment_count", "2");
    FIELD(h, i, "bacnet.request.segments.0.offset_us", "0");
    FIELD(h, i, "bacnet.request.segments.0.more_follows", "true");
    FIELD(h, i, "bacnet.request.segments.1.offset_us", "200");
    FIELD(h, i, "bacnet.request.segments.1.sequence_number", "1");
    FIELD(h, i, "bacnet.request.segments.1.window_size", "2");
    FIELD(h, i, "bacnet.request.segments.1.more_follows", "false");
    FIELD(h, i, "bacnet.request.segment_ack_count", "2");
    FIELD(h, i, "bacnet.request.segment_acks.0.offset_us", "100");
    FIELD(h, i, "bacnet.request.segment_acks.0.sent_by_server", "true");
    FIELD(h, i, "bacnet.request.segment_acks.1.offset_us", "300");
    FIELD(h, i, "bacnet.request.segment_acks.1.sequence_number", "1");
    FIELD(h, i, "bacnet.request.property", "\"present_value\"");
    FIELD(h, i, "bacnet.request.value", "5");
    ABSENT(h, i, "bacnet.request.incomplete");
    ABSENT(h, i, "bacnet.response.segments");
    ABSENT(h, i, "bacnet.response.segment_acks");
    check_clean(h);
}

static void
test_segmented_both_ways(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* ReadProperty device 1234 object-list in three request segments (window 2) */
    send_apdu(h, A, BYTES(0x0e, 0x75, 0x21, 0x00, 0x02, 0x0c, 0x0c, 0x02, 0x00));
    at(h, 10);
    send_apdu(h, A, BYTES(0x0e, 0x75, 0x21, 0x01, 0x02, 0x0c, 0x04, 0xd2));
    at(h, 20);
    send_segment_ack(h, B, FALSE, TRUE, 0x21, 1, 2);
    at(h, 30);
    send_apdu(h, A, BYTES(0x0a, 0x75, 0x21, 0x02, 0x02, 0x0c, 0x19, 0x4c));
    at(h, 40);
    send_segment_ack(h, B, FALSE, TRUE, 0x21, 2, 2);
    /* ... answered in three segments; the client misses the second, asks
     * for it again with a negative ACK and gets it retransmitted */
    at(h, 100);
    send_apdu(h, B, BYTES(0x3c, 0x21, 0x00, 0x02, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2));
    at(h, 110);
    send_apdu(h, B, BYTES(0x3c, 0x21, 0x01, 0x02, 0x0c, 0x19, 0x4c, 0x3e));
    at(h, 120);
    send_segment_ack(h, A, TRUE, FALSE, 0x21, 0, 2);
    at(h, 130);
    send_apdu(h, B, BYTES(0x3c, 0x21, 0x01, 0x02, 0x0c, 0x19, 0x4c, 0x3e));
    at(h, 140);
    send_apdu(h, B, BYTES(0x38, 0x21, 0x02, 0x02, 0x0c, 0xc4, 0x02, 0x00, 0x04, 0xd2, 0x3f));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    at(h, 150);
    send_segment_ack(h, A, FALSE, FALSE, 0x21, 2, 2);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "latency_us", "140");
    FIELD(h, i, "bacnet.request.segment_count", "3");
    FIELD(h, i, "bacnet.request.segments.2.offset_us", "30");
    FIELD(h, i, "bacnet.request.segments.2.more_follows", "false");
    FIELD(h, i, "bacnet.request.segment_ack_count", "2");
    FIELD(h, i, "bacnet.request.segment_acks.0.sequence_number", "1");
    FIELD(h, i, "bacnet.request.segment_acks.1.offset_us", "40");
    FIELD(h, i, "bacnet.request.object_instance", "1234");
    FIELD(h, i, "bacnet.request.property", "\"object_list\"");
    FIELD(h, i, "bacnet.response.segment_count", "4");
    FIELD(h, i, "bacnet.response.segments.2.offset_us", "130");
    FIELD(h, i, "bacnet.response.segments.2.sequence_number", "1");
    FIELD(h, i, "bacnet.response.segments.3.sequence_number", "2");
    FIELD(h, i, "bacnet.response.segments.3.more_follows", "false");
    FIELD(h, i, "bacnet.response.segment_ack_count", "2");
    FIELD(h, i, "bacnet.response.segment_acks.0.offset_us", "120");
    FIELD(h, i, "bacnet.response.segment_acks.0.negative_ack", "true");
    FIELD(h, i, "bacnet.response.segment_acks.0.sent_by_server", "false");
    FIELD(h, i, "bacnet.response.segment_acks.1.negative_ack", "false");
    FIELD(h, i, "bacnet.response.value.object_instance", "1234");
    ABSENT(h, i, "bacnet.response.incomplete");
    check_clean(h);
}

static void
test_segment_ack_alone(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* a client's segment ACK of nothing we saw */
    send_segment_ack(h, A, FALSE, FALSE, 0x30, 3, 8);
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"no_response\"");
    FIELD(h, i, "function", "0");
    FIELD(h, i, "function_name", "\"segment_ack\"");
    FIELD(h, i, "src_ip", "\"127.0.0.1\""); /* its sender */
    FIELD(h, i, "bacnet.layer", "\"application\"");
    FIELD(h, i, "bacnet.request.apdu_type", "4");
    FIELD(h, i, "bacnet.request.invoke_id", "48");
    FIELD(h, i, "bacnet.request.sequence_number", "3");
    FIELD(h, i, "bacnet.request.window_size", "8");
    FIELD(h, i, "bacnet.request.negative_ack", "false");
    FIELD(h, i, "bacnet.request.sent_by_server", "false");
    ABSENT(h, i, "bacnet.response");
    /* a server's negative ACK for a request that was not segmented: not
     * part of that transaction, which still ends normally */
    send_apdu(h, A, BYTES(0x00, 0x05, 0x31, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x55));
    send_segment_ack(h, B, TRUE, TRUE, 0x31, 0, 1);
    i = tx(h, 1);
    FIELD(h, i, "function_name", "\"segment_ack\"");
    FIELD(h, i, "src_ip", "\"127.0.0.2\"");
    FIELD(h, i, "bacnet.request.negative_ack", "true");
    FIELD(h, i, "bacnet.request.sent_by_server", "true");
    send_apdu(
        h, B,
        BYTES(0x30, 0x31, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x55, 0x3e, 0x21, 0x01, 0x3f));
    i = tx(h, 2);
    FIELD(h, i, "status", "\"ok\"");
    ABSENT(h, i, "bacnet.request.segment_acks");
    ABSENT(h, i, "bacnet.response.segments");
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
    check_clean(h);
}

static void
test_segmented_final_ack_missing(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_apdu(h, A, BYTES(0x02, 0x75, 0x40, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x4c));
    at(h, 1000);
    send_apdu(h, B, BYTES(0x3c, 0x40, 0x00, 0x04, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x4c));
    at(h, 2000);
    send_apdu(h, B, BYTES(0x38, 0x40, 0x01, 0x04, 0x0c, 0x3e, 0xc4, 0x02, 0x00, 0x04, 0xd2, 0x3f));
    /* no ACK of the last segment: reported once it is overdue */
    ots_harness_tick(h, T0 + 2000 + G_USEC_PER_SEC);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    ots_harness_tick(h, T0 + 2000 + 3 * G_USEC_PER_SEC);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "latency_us", "2000");
    FIELD(h, i, "bacnet.response.segment_count", "2");
    ABSENT(h, i, "bacnet.response.segment_acks");
    FIELD(h, i, "bacnet.response.value.object_instance", "1234");

    /* ... or at flow end; a complex ACK whose request was not seen starts
     * its event at its first segment */
    at(h, 10 * G_USEC_PER_SEC);
    send_apdu(h, B, BYTES(0x3c, 0x41, 0x00, 0x04, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x4c));
    at(h, 10 * G_USEC_PER_SEC + 50);
    send_segment_ack(h, A, FALSE, FALSE, 0x41, 0, 4);
    at(h, 10 * G_USEC_PER_SEC + 70);
    send_apdu(h, B, BYTES(0x38, 0x41, 0x01, 0x04, 0x0c, 0x3e, 0xc4, 0x02, 0x00, 0x04, 0xd2, 0x3f));
    ots_harness_end(h);
    i = tx(h, 1);
    FIELD(h, i, "status", "\"no_request\"");
    FIELD(h, i, "ts", "\"2023-11-14T22:13:30.000000Z\"");
    FIELD(h, i, "src_ip", "\"127.0.0.1\"");
    ABSENT(h, i, "bacnet.request");
    FIELD(h, i, "bacnet.response.segments.0.offset_us", "0");
    FIELD(h, i, "bacnet.response.segments.1.offset_us", "70");
    FIELD(h, i, "bacnet.response.segment_acks.0.offset_us", "50");
    FIELD(h, i, "bacnet.response.property", "\"object_list\"");
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    check_clean(h);
}

static void
test_segmented_aborted(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_apdu(h, A, BYTES(0x02, 0x75, 0x50, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x4c));
    at(h, 100);
    send_apdu(h, B, BYTES(0x3c, 0x50, 0x00, 0x04, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x4c));
    /* the client gives up (buffer overflow) */
    at(h, 200);
    send_apdu(h, A, BYTES(0x70, 0x50, 0x01));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "latency_us", "100");
    FIELD(h, i, "bacnet.response.segment_count", "1");
    FIELD(h, i, "bacnet.response.incomplete", "true");
    i = tx(h, 1);
    FIELD(h, i, "status", "\"no_request\"");
    FIELD(h, i, "bacnet.response.apdu_type", "7");
    FIELD(h, i, "bacnet.response.sent_by_server", "false");
    CU_ASSERT_EQUAL(alerts(h, "response_without_request"), 0);
    check_clean(h);
}

static void
test_segment_out_of_order(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_apdu(h, A, BYTES(0x02, 0x75, 0x11, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x4c));
    send_apdu(h, B, BYTES(0x3c, 0x11, 0x00, 0x04, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2));
    send_apdu(h, B, BYTES(0x38, 0x11, 0x05, 0x04, 0x0c, 0x3f));
    CU_ASSERT_EQUAL(alerts(h, "segment_out_of_order"), 1);
    send_segment_ack(h, A, FALSE, FALSE, 0x11, 5, 4);
    gint i = tx(h, 0);
    FIELD(h, i, "bacnet.response.incomplete", "true");
    FIELD(h, i, "bacnet.response.segment_count", "2");
    FIELD(h, i, "bacnet.response.segment_ack_count", "1");
    ABSENT(h, i, "bacnet.response.property_id");

    /* the last segment of an answer whose start was not seen */
    send_apdu(h, B, BYTES(0x38, 0x12, 0x03, 0x04, 0x0c, 0x3f));
    CU_ASSERT_EQUAL(alerts(h, "segment_without_start"), 1);
    send_segment_ack(h, A, FALSE, FALSE, 0x12, 3, 4);
    i = tx(h, 1);
    FIELD(h, i, "status", "\"no_request\"");
    FIELD(h, i, "bacnet.response.incomplete", "true");
    FIELD(h, i, "bacnet.response.segments.0.sequence_number", "3");
    FIELD(h, i, "bacnet.response.segment_acks.0.sequence_number", "3");

    /* the last segments of a request whose start was not seen */
    send_apdu(h, A, BYTES(0x0c, 0x05, 0x13, 0x01, 0x02, 0x0f, 0x55));
    send_segment_ack(h, B, FALSE, TRUE, 0x13, 1, 2);
    send_apdu(h, A, BYTES(0x08, 0x05, 0x13, 0x02, 0x02, 0x0f, 0x3e, 0x21, 0x05, 0x3f));
    send_apdu(h, B, BYTES(0x20, 0x13, 0x0f));
    CU_ASSERT_EQUAL(alerts(h, "segment_without_start"), 2);
    CU_ASSERT_EQUAL(alerts(h, "response_without_request"), 0);
    i = tx(h, 2);
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "function_name", "\"write_property\"");
    FIELD(h, i, "bacnet.request.incomplete", "true");
    FIELD(h, i, "bacnet.request.segment_count", "2");
    FIELD(h, i, "bacnet.request.segment_ack_count", "1");
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_segment_overflow(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_apdu(h, A, BYTES(0x02, 0x75, 0x13, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x4c));
    guint8 seg[1400];
    memset(seg, 0xc4, sizeof(seg));
    seg[0] = 0x3c;
    seg[1] = 0x13;
    seg[4] = 0x0c;
    guint n;
    for (n = 0; n < 400 && alerts(h, "segment_overflow") == 0; n++) {
        seg[2] = (guint8)n;
        seg[3] = 0x04;
        send_apdu(h, B, seg, sizeof(seg));
    }
    CU_ASSERT_EQUAL(alerts(h, "segment_overflow"), 1);
    CU_ASSERT(n < 400);
    seg[0] = 0x38;
    seg[2] = (guint8)n;
    send_apdu(h, B, seg, sizeof(seg));
    send_segment_ack(h, A, FALSE, FALSE, 0x13, (guint8)n, 4);
    gint i = tx(h, 0);
    FIELD(h, i, "bacnet.response.incomplete", "true");
    g_autofree gchar *count = g_strdup_printf("%u", n + 1);
    FIELD(h, i, "bacnet.response.segment_count", count);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_segment_lists_bounded(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* ReadProperty answered with 98 unsigned values in 100 small segments,
     * each acknowledged: reassembled whole, listed up to the bound */
    send_apdu(h, A, BYTES(0x02, 0x75, 0x14, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x4c));
    const guint n = 100;
    for (guint k = 0; k < n; k++) {
        at(h, (gint64)k * 10);
        if (k == 0)
            send_apdu(h, B,
                      BYTES(0x3c, 0x14, 0x00, 0x01, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x4c,
                            0x3e));
        else if (k < n - 1)
            send_apdu(h, B, BYTES(0x3c, 0x14, (guint8)k, 0x01, 0x0c, 0x21, (guint8)k));
        else
            send_apdu(h, B, BYTES(0x38, 0x14, (guint8)k, 0x01, 0x0c, 0x3f));
        at(h, (gint64)k * 10 + 5);
        send_segment_ack(h, A, FALSE, FALSE, 0x14, (guint8)k, 1);
    }
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "latency_us", "990");
    ABSENT(h, i, "bacnet.response.incomplete");
    FIELD(h, i, "bacnet.response.value_count", "98");
    FIELD(h, i, "bacnet.response.segment_count", "100");
    FIELD(h, i, "bacnet.response.segments_truncated", "true");
    g_autofree gchar *last = g_strdup_printf("bacnet.response.segments.%u", MAX_LISTED - 1);
    g_autofree gchar *past = g_strdup_printf("bacnet.response.segments.%u", MAX_LISTED);
    g_autofree gchar *last_ack =
        g_strdup_printf("bacnet.response.segment_acks.%u.offset_us", MAX_LISTED - 1);
    g_autofree gchar *past_ack = g_strdup_printf("bacnet.response.segment_acks.%u", MAX_LISTED);
    FIELD(h, i, last,
          "{\"offset_us\":630,\"sequence_number\":63,\"window_size\":1,"
          "\"more_follows\":true}");
    ABSENT(h, i, past);
    FIELD(h, i, "bacnet.response.segment_ack_count", "100");
    FIELD(h, i, "bacnet.response.segment_acks_truncated", "true");
    FIELD(h, i, last_ack, "635");
    ABSENT(h, i, past_ack);
    check_clean(h);
}

/* ---- BVLC and NPDU ----------------------------------------------------- */

static void
test_forwarded_and_routed(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* I-Am forwarded by a BBMD for 127.0.1.10:47808, from network 5 MAC 7 */
    send_bvlc(h, B, 0x04,
              BYTES(127, 0, 1, 10, 0xba, 0xc0, 0x01, 0x08, 0x00, 0x05, 0x01, 0x07, 0x10, 0x00,
                    0xc4, 0x02, 0x00, 0x00, 0x05, 0x21, 0x32, 0x91, 0x03, 0x21, 0x08));
    gint i = tx(h, 0);
    FIELD(h, i, "bacnet.request.bvlc_function", "4");
    FIELD(h, i, "bacnet.request.bvlc_function_name", "\"forwarded_npdu\"");
    FIELD(h, i, "bacnet.request.forwarded_from", "\"127.0.1.10:47808\"");
    FIELD(h, i, "bacnet.request.npdu.snet", "5");
    FIELD(h, i, "bacnet.request.npdu.sadr", "\"07\"");
    FIELD(h, i, "bacnet.request.segmentation_supported_name", "\"none\"");
    /* global broadcast Who-Is */
    send_bvlc(h, A, 0x0b, BYTES(0x01, 0x20, 0xff, 0xff, 0x00, 0xff, 0x10, 0x08));
    i = tx(h, 1);
    FIELD(h, i, "bacnet.request.npdu.dnet", "65535");
    FIELD(h, i, "bacnet.request.npdu.hop_count", "255");
    ABSENT(h, i, "bacnet.request.npdu.dadr");
    check_clean(h);
}

/* A flow's header members are kept rendered (put_hdr()): a header that
 * changes between transactions must show as it is in each. */
static void
test_header_changes(void)
{
    g_autoptr(OtsHarness) h = harness();
    static const guint8 ack[] = {0x01, 0x00, 0x30, 0x00, 0x0c, 0x0c, 0x00, 0x00, 0x00,
                                 0x01, 0x19, 0x55, 0x3e, 0x44, 0x42, 0x28, 0x00, 0x00, 0x3f};
    for (guint8 k = 0; k < 6; k++) {
        /* local, routed to network 5 MAC 07, local, routed to network 6, ... */
        gboolean routed = k % 2 == 1;
        guint8 req[32] = {0x01, routed ? 0x24 : 0x04};
        gsize n = 2;
        if (routed) {
            guint8 route[] = {0x00, (guint8)(4 + k / 2), 0x01, 0x07, 0xff};
            memcpy(req + n, route, sizeof(route));
            n += sizeof(route);
        }
        guint8 apdu[] = {0x00, 0x05, k, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x55};
        memcpy(req + n, apdu, sizeof(apdu));
        n += sizeof(apdu);
        send_bvlc(h, A, k < 4 ? 0x0a : 0x0b, req, n);
        guint8 resp[sizeof(ack)];
        memcpy(resp, ack, sizeof(ack));
        resp[3] = k;
        send_bvlc(h, B, 0x0a, resp, sizeof(resp));
        gint i = tx(h, k);
        FIELD(h, i, "bacnet.request.bvlc_function", k < 4 ? "10" : "11");
        FIELD(h, i, "bacnet.request.npdu.control", routed ? "36" : "4");
        if (routed) {
            g_autofree char *dnet = g_strdup_printf("%u", 4 + k / 2);
            FIELD(h, i, "bacnet.request.npdu.dnet", dnet);
            FIELD(h, i, "bacnet.request.npdu.dadr", "\"07\"");
        } else {
            ABSENT(h, i, "bacnet.request.npdu.dnet");
        }
        FIELD(h, i, "bacnet.response.npdu.control", "0");
        FIELD(h, i, "bacnet.response.value", "42");
    }
    check_clean(h);
}

static void
test_network_messages(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_bvlc(h, A, 0x0b, BYTES(0x01, 0x80, 0x00));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "0");
    FIELD(h, i, "function_name", "\"who_is_router_to_network\"");
    FIELD(h, i, "op_class", "\"discovery\"");
    FIELD(h, i, "status", "\"no_response\"");
    FIELD(h, i, "bacnet.layer", "\"network\"");
    FIELD(h, i, "bacnet.request.network_message_type", "0");
    send_bvlc(h, B, 0x0b, BYTES(0x01, 0x80, 0x01, 0x00, 0x05, 0x00, 0x06));
    i = tx(h, 1);
    FIELD(h, i, "function_name", "\"i_am_router_to_network\"");
    FIELD(h, i, "bacnet.request.networks", "[5,6]");
    send_bvlc(h, B, 0x0b, BYTES(0x01, 0x80, 0x90, 0x01, 0x04, 0xaa));
    FIELD(h, tx(h, 2), "function_name", "\"proprietary\"");
    FIELD(h, tx(h, 2), "bacnet.request.vendor_id", "260");
    check_clean(h);
    send_bvlc(h, B, 0x0b, BYTES(0x01, 0x80, 0x01));
    CU_ASSERT_EQUAL(alerts(h, "bad_length"), 1);
}

static void
test_bvlc_functions(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_bvlc(h, A, 0x05, BYTES(0x00, 0x3c));
    ots_harness_set_time(h, T0 + 900);
    send_bvlc(h, B, 0x00, BYTES(0x00, 0x00));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "5");
    FIELD(h, i, "function_name", "\"register_foreign_device\"");
    FIELD(h, i, "op_class", "\"session\"");
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "latency_us", "900");
    FIELD(h, i, "bacnet.layer", "\"bvlc\"");
    FIELD(h, i, "bacnet.request.time_to_live", "60");
    FIELD(h, i, "bacnet.response.bvlc_function", "0");
    FIELD(h, i, "bacnet.response.result_code", "0");

    send_bvlc(h, A, 0x06, NULL, 0);
    send_bvlc(h, B, 0x07, BYTES(10, 0, 0, 1, 0xba, 0xc0, 0x00, 0x3c, 0x00, 0x10));
    i = tx(h, 1);
    FIELD(h, i, "function_name", "\"read_foreign_device_table\"");
    FIELD(h, i, "bacnet.response.entries", "1");

    send_bvlc(h, A, 0x01, BYTES(10, 0, 0, 1, 0xba, 0xc0, 0xff, 0xff, 0xff, 0xff));
    send_bvlc(h, B, 0x00, BYTES(0x00, 0x10));
    i = tx(h, 2);
    FIELD(h, i, "op_class", "\"config\"");
    FIELD(h, i, "status", "\"exception\"");
    FIELD(h, i, "bacnet.response.result_code", "16");
    check_clean(h);

    /* a result nobody asked for */
    send_bvlc(h, B, 0x00, BYTES(0x00, 0x00));
    FIELD(h, tx(h, 3), "status", "\"no_request\"");
    CU_ASSERT_EQUAL(alerts(h, "response_without_request"), 1);
    /* unanswered at the end */
    send_bvlc(h, A, 0x02, NULL, 0);
    ots_harness_end(h);
    FIELD(h, tx(h, 4), "status", "\"unanswered\"");
    FIELD(h, tx(h, 4), "function_name", "\"read_broadcast_distribution_table\"");
}

/* ---- malformed --------------------------------------------------------- */

static void
test_malformed_headers(void)
{
    g_autoptr(OtsHarness) h = harness();
    CU_ASSERT_EQUAL(ots_harness_feed(h, A, BYTES(0x82, 0x0a, 0x00, 0x06, 0x01, 0x00)),
                    OTS_PARSE_MALFORMED);
    CU_ASSERT_EQUAL(alerts(h, "bad_bvlc_type"), 1);
    CU_ASSERT_EQUAL(ots_harness_feed(h, A, BYTES(0x81, 0x0a, 0x00, 0x02, 0x01, 0x00)),
                    OTS_PARSE_MALFORMED);
    CU_ASSERT_EQUAL(ots_harness_feed(h, A, BYTES(0x81, 0x0a)), OTS_PARSE_MALFORMED);
    CU_ASSERT_EQUAL(alerts(h, "bad_bvlc_length"), 2);
    CU_ASSERT_EQUAL(ots_harness_feed(h, A, BYTES(0x81, 0x2a, 0x00, 0x04)), OTS_PARSE_MALFORMED);
    CU_ASSERT_EQUAL(alerts(h, "unknown_bvlc_function"), 1);
    CU_ASSERT_EQUAL(send_bvlc(h, A, 0x0a, BYTES(0x02, 0x00, 0x10, 0x08)), OTS_PARSE_MALFORMED);
    CU_ASSERT_EQUAL(alerts(h, "bad_npdu_version"), 1);
    CU_ASSERT_EQUAL(send_bvlc(h, A, 0x0a, BYTES(0x01, 0x20, 0x00)), OTS_PARSE_MALFORMED);
    CU_ASSERT_EQUAL(alerts(h, "bad_npdu"), 1);
    CU_ASSERT_EQUAL(send_apdu(h, A, BYTES(0x90, 0x01)), OTS_PARSE_MALFORMED);
    CU_ASSERT_EQUAL(alerts(h, "bad_apdu_type"), 1);
    CU_ASSERT_EQUAL(send_apdu(h, A, BYTES(0x00, 0x05)), OTS_PARSE_MALFORMED);
    CU_ASSERT_EQUAL(alerts(h, "bad_length"), 1);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    /* a BVLC length that disagrees with the datagram is reported, and the
     * whole datagram dissected */
    CU_ASSERT_EQUAL(ots_harness_feed(h, A, BYTES(0x81, 0x0b, 0x00, 0x20, 0x01, 0x00, 0x10, 0x08)),
                    OTS_PARSE_OK);
    CU_ASSERT_EQUAL(ots_harness_feed(h, A, BYTES(0x81, 0x0b, 0x00, 0x06, 0x01, 0x00, 0x10, 0x08)),
                    OTS_PARSE_OK);
    CU_ASSERT_EQUAL(alerts(h, "bad_bvlc_length"), 4);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    FIELD(h, tx(h, 1), "function_name", "\"who_is\"");
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_malformed_service_data(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* ReadProperty cut inside the object identifier */
    send_apdu(h, A, BYTES(0x00, 0x05, 0x01, 0x0c, 0x0c, 0x00, 0x00));
    send_apdu(h, B, BYTES(0x50, 0x01, 0x0c, 0x91, 0x05, 0x91, 0x05));
    FIELD(h, tx(h, 0), "status", "\"exception\"");
    CU_ASSERT_EQUAL(alerts(h, "bad_tag"), 1);
    /* I-Am with the wrong tag for max APDU */
    send_apdu(h, B, BYTES(0x10, 0x00, 0xc4, 0x02, 0x00, 0x04, 0xd2, 0x91, 0x05));
    CU_ASSERT_EQUAL(alerts(h, "bad_tag"), 2);
    CU_ASSERT_EQUAL(ots_harness_count(h, "asset"), 0);
    /* a value that is never closed */
    send_apdu(
        h, A,
        BYTES(0x00, 0x05, 0x02, 0x0f, 0x0c, 0x00, 0x40, 0x00, 0x01, 0x19, 0x55, 0x3e, 0x21, 0x01));
    send_apdu(h, B, BYTES(0x20, 0x02, 0x0f));
    CU_ASSERT_EQUAL(alerts(h, "bad_tag"), 3);
    /* extended length beyond the data */
    send_apdu(h, B, BYTES(0x10, 0x07, 0x3d, 0xfe, 0xff, 0xff));
    CU_ASSERT_EQUAL(alerts(h, "bad_tag"), 4);
    /* a simple ACK for another service, with trailing bytes */
    send_apdu(h, A, BYTES(0x00, 0x05, 0x03, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x55));
    send_apdu(h, B, BYTES(0x20, 0x03, 0x0f, 0x00));
    CU_ASSERT_EQUAL(alerts(h, "service_mismatch"), 1);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
    /* unknown services */
    send_apdu(h, A, BYTES(0x10, 0x40));
    CU_ASSERT_EQUAL(alerts(h, "unknown_service"), 1);
    FIELD(h, tx(h, ots_harness_count(h, "transaction") - 1), "function_name", "\"unknown\"");
}

/* ---- pairing ----------------------------------------------------------- */

static void
test_response_without_request(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_apdu(
        h, B,
        BYTES(0x30, 0x63, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x55, 0x3e, 0x21, 0x01, 0x3f));
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"no_request\"");
    FIELD(h, i, "function", "12");
    FIELD(h, i, "src_ip", "\"127.0.0.1\""); /* the requester is the other side */
    FIELD(h, i, "bacnet.response.invoke_id", "99");
    ABSENT(h, i, "bacnet.request");
    ABSENT(h, i, "latency_us");
    CU_ASSERT_EQUAL(alerts(h, "response_without_request"), 1);
}

static void
test_server_initiated_request(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* the flow's server reads from the client; same invoke id both ways */
    send_apdu(h, B, BYTES(0x00, 0x05, 0x01, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x02, 0x19, 0x55));
    send_apdu(h, A, BYTES(0x00, 0x05, 0x01, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x03, 0x19, 0x55));
    send_apdu(
        h, A,
        BYTES(0x30, 0x01, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x02, 0x19, 0x55, 0x3e, 0x21, 0x02, 0x3f));
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "src_ip", "\"127.0.0.2\"");
    FIELD(h, i, "bacnet.request.object_instance", "2");
    FIELD(h, i, "bacnet.response.value", "2");
    send_apdu(
        h, B,
        BYTES(0x30, 0x01, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x03, 0x19, 0x55, 0x3e, 0x21, 0x03, 0x3f));
    i = tx(h, 1);
    FIELD(h, i, "src_ip", "\"127.0.0.1\"");
    FIELD(h, i, "bacnet.response.value", "3");
    check_clean(h);
}

static void
test_unanswered_end_and_timeout(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_apdu(h, A, BYTES(0x00, 0x05, 0x01, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x55));
    ots_harness_set_time(h, T0 + 10 * G_USEC_PER_SEC);
    send_apdu(h, A, BYTES(0x00, 0x05, 0x02, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x55));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    ots_harness_set_time(h, T0 + 31 * G_USEC_PER_SEC);
    send_apdu(h, A, BYTES(0x10, 0x08));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    FIELD(h, tx(h, 0), "status", "\"unanswered\"");
    FIELD(h, tx(h, 0), "bacnet.request.invoke_id", "1");
    ABSENT(h, tx(h, 0), "bacnet.response");
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
    FIELD(h, tx(h, 2), "status", "\"unanswered\"");
    FIELD(h, tx(h, 2), "bacnet.request.invoke_id", "2");
    check_clean(h);
}

static void
test_invoke_id_reuse_and_bound(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint8 rp[] = {0x00, 0x05, 0x00, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x55};
    send_apdu(h, A, rp, sizeof(rp));
    send_apdu(h, A, rp, sizeof(rp)); /* same invoke id: the first was given up */
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    FIELD(h, tx(h, 0), "status", "\"unanswered\"");
    for (guint k = 1; k < 256; k++) {
        rp[2] = (guint8)k;
        send_apdu(h, A, rp, sizeof(rp));
    }
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    rp[2] = 0;
    send_apdu(h, B, rp, sizeof(rp)); /* one more than the table holds */
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    FIELD(h, tx(h, 1), "bacnet.request.invoke_id", "0");
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2 + 256);
    check_clean(h);
}

/* ---- memory budget (flows.memcap_mb) ----------------------------------- */

#define MEMCAP_NORMAL (1024 * 1024)
#define MEMCAP_TINY 64 /* less than one pending request */

/* ReadProperty analog-input 1 present-value, invoke id @invoke. */
static void
send_read_property(OtsHarness *h, guint8 invoke)
{
    send_apdu(h, A, BYTES(0x00, 0x05, invoke, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x55));
}

static void
send_read_property_ack(OtsHarness *h, guint8 invoke)
{
    send_apdu(h, B,
              BYTES(0x30, invoke, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x55, 0x3e, 0x44, 0x42,
                    0x28, 0x00, 0x00, 0x3f));
}

/* What one pending ReadProperty is charged. */
static gsize
read_property_charge(void)
{
    g_autoptr(OtsHarness) h = harness();
    send_read_property(h, 1);
    return ots_harness_mem_used(h);
}

/* Every charge is refunded: pairs, expiry, segmented messages, flow end. */
static void
test_memcap_balanced(void)
{
    g_autoptr(OtsHarness) h = harness();
    ots_harness_set_memcap(h, MEMCAP_NORMAL);
    gsize base = ots_harness_mem_used(h);

    /* request / response pairs, including a body over the spare's bound */
    send_read_property(h, 1);
    CU_ASSERT(ots_harness_mem_used(h) > base);
    send_read_property_ack(h, 1);
    /* What stays is the flow's two header memos (put_hdr()), charged once;
     * they go back at flow end. */
    gsize start = base;
    base += 2 * sizeof(OtsEventMemo);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);
    guint8 big[320] = {0x00, 0x05, 0x06, 0x0f, 0x0c, 0x00, 0x40, 0x00, 0x01,
                       0x19, 0x4d, 0x3e, 0x75, 0xfe, 0x01, 0x2d, 0x00};
    gsize n = 17;
    memset(big + n, 'a', 300);
    n += 300;
    big[n++] = 0x3f;
    send_apdu(h, A, big, n);
    CU_ASSERT(ots_harness_mem_used(h) > base + 300);
    send_apdu(h, B, BYTES(0x20, 0x06, 0x0f));
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);

    /* unanswered requests, expired */
    for (guint8 k = 10; k < 13; k++)
        send_read_property(h, k);
    CU_ASSERT(ots_harness_mem_used(h) > base);
    ots_harness_tick(h, T0 + 31 * G_USEC_PER_SEC);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 5);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);

    /* a segmented complex ACK, complete at the client's last segment ACK */
    gint64 t = 40 * G_USEC_PER_SEC;
    at(h, t);
    send_apdu(h, A, BYTES(0x02, 0x75, 0x10, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x4c));
    at(h, t + 1000);
    send_apdu(h, B,
              BYTES(0x3c, 0x10, 0x00, 0x04, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x4c, 0x3e,
                    0xc4, 0x02));
    send_segment_ack(h, A, FALSE, FALSE, 0x10, 0, 4);
    at(h, t + 2000);
    send_apdu(
        h, B,
        BYTES(0x38, 0x10, 0x01, 0x04, 0x0c, 0x00, 0x04, 0xd2, 0xc4, 0x00, 0x00, 0x00, 0x01, 0x3f));
    CU_ASSERT(ots_harness_mem_used(h) > base);
    send_segment_ack(h, A, FALSE, FALSE, 0x10, 1, 4);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 6);
    FIELD(h, tx(h, 5), "bacnet.response.value.object_instance", "1234");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);

    /* a segmented request, answered */
    send_apdu(h, A, BYTES(0x0c, 0x05, 0x20, 0x00, 0x02, 0x0f, 0x0c, 0x00, 0x40, 0x00, 0x01, 0x19));
    send_segment_ack(h, B, FALSE, TRUE, 0x20, 0, 2);
    send_apdu(h, A, BYTES(0x08, 0x05, 0x20, 0x01, 0x02, 0x0f, 0x55, 0x3e, 0x21, 0x05, 0x3f));
    send_segment_ack(h, B, FALSE, TRUE, 0x20, 1, 2);
    CU_ASSERT(ots_harness_mem_used(h) > base);
    send_apdu(h, B, BYTES(0x20, 0x20, 0x0f));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 7);
    FIELD(h, tx(h, 6), "bacnet.request.segment_count", "2");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);

    /* a segmented answer restarted from segment 0, then aborted */
    send_apdu(h, A, BYTES(0x02, 0x75, 0x50, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x4c));
    send_apdu(h, B, BYTES(0x3c, 0x50, 0x00, 0x04, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x4c));
    send_apdu(h, B, BYTES(0x3c, 0x50, 0x01, 0x04, 0x0c, 0x3e, 0xc4, 0x02));
    send_apdu(h, B, BYTES(0x3c, 0x50, 0x00, 0x04, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x4c));
    send_apdu(h, A, BYTES(0x70, 0x50, 0x01));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 9);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);

    /* what is pending at flow end */
    send_read_property(h, 30);
    send_apdu(h, B, BYTES(0x3c, 0x31, 0x00, 0x04, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x4c));
    CU_ASSERT(ots_harness_mem_used(h) > base);
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 11);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), start);
    CU_ASSERT_EQUAL(ots_harness_memcap_refused(h), 0);
    CU_ASSERT_EQUAL(alerts(h, "memcap"), 0);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

/* Over the budget, requests are reported at once, none lost. */
static void
test_memcap_requests(void)
{
    g_autoptr(OtsHarness) h = harness();
    ots_harness_set_memcap(h, MEMCAP_TINY);
    for (guint8 k = 0; k < 5; k++) {
        send_read_property(h, k);
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), k + 1u);
        gint i = tx(h, k);
        FIELD(h, i, "status", "\"unanswered\"");
        FIELD(h, i, "function_name", "\"read_property\"");
        g_autofree gchar *inv = g_strdup_printf("%u", k);
        FIELD(h, i, "bacnet.request.invoke_id", inv);
        FIELD(h, i, "bacnet.request.property", "\"present_value\"");
        ABSENT(h, i, "bacnet.response");
    }
    CU_ASSERT(ots_harness_memcap_refused(h) > 0);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
    /* its answer comes alone */
    send_read_property_ack(h, 4);
    FIELD(h, tx(h, 5), "status", "\"no_request\"");
    CU_ASSERT_EQUAL(alerts(h, "response_without_request"), 1);
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 6);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);

    /* Room for two: each new one lets the oldest go, reported unanswered. */
    gsize one = read_property_charge();
    g_autoptr(OtsHarness) h2 = harness();
    ots_harness_set_memcap(h2, 2 * one + one / 2);
    for (guint8 k = 0; k < 5; k++)
        send_read_property(h2, k);
    CU_ASSERT_EQUAL(ots_harness_count(h2, "transaction"), 3);
    for (guint k = 0; k < 3; k++) {
        g_autofree gchar *inv = g_strdup_printf("%u", k);
        FIELD(h2, tx(h2, k), "status", "\"unanswered\"");
        FIELD(h2, tx(h2, k), "bacnet.request.invoke_id", inv);
    }
    CU_ASSERT(ots_harness_memcap_refused(h2) > 0);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h2), 2 * one);
    send_read_property_ack(h2, 4);
    FIELD(h2, tx(h2, 3), "status", "\"ok\"");
    FIELD(h2, tx(h2, 3), "bacnet.request.invoke_id", "4");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h2), one);
    ots_harness_end(h2);
    CU_ASSERT_EQUAL(ots_harness_count(h2, "transaction"), 5);
    FIELD(h2, tx(h2, 4), "bacnet.request.invoke_id", "3");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h2), 0);
    check_clean(h2);
}

/* Over the budget, a segmented message is abandoned with an anomaly. */
static void
test_memcap_reassembly(void)
{
    /* The request is kept, its segmented answer is not. */
    g_autoptr(OtsHarness) h = harness();
    ots_harness_set_memcap(h, read_property_charge() + 100);
    send_apdu(h, A, BYTES(0x02, 0x75, 0x13, 0x0c, 0x0c, 0x02, 0x00, 0x04, 0xd2, 0x19, 0x4c));
    guint8 seg[1400];
    memset(seg, 0xc4, sizeof(seg));
    seg[0] = 0x3c;
    seg[1] = 0x13;
    seg[3] = 0x04;
    seg[4] = 0x0c;
    for (guint k = 0; k < 3; k++) {
        seg[2] = (guint8)k;
        if (k == 2)
            seg[0] = 0x38;
        send_apdu(h, B, seg, sizeof(seg));
    }
    CU_ASSERT_EQUAL(alerts(h, "memcap"), 1);
    send_segment_ack(h, A, FALSE, FALSE, 0x13, 2, 4);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "bacnet.response.segment_count", "3");
    FIELD(h, i, "bacnet.response.incomplete", "true");
    CU_ASSERT(ots_harness_memcap_refused(h) > 0);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);

    /* No room even for the entry: each segment is reported at once. */
    g_autoptr(OtsHarness) h2 = harness();
    ots_harness_set_memcap(h2, MEMCAP_TINY);
    send_apdu(h2, A, BYTES(0x0c, 0x05, 0x21, 0x00, 0x02, 0x0f, 0x0c, 0x00, 0x40, 0x00, 0x01, 0x19));
    CU_ASSERT_EQUAL(alerts(h2, "memcap"), 1);
    CU_ASSERT_EQUAL(ots_harness_count(h2, "transaction"), 1);
    FIELD(h2, tx(h2, 0), "status", "\"unanswered\"");
    FIELD(h2, tx(h2, 0), "bacnet.request.segment_count", "1");
    FIELD(h2, tx(h2, 0), "bacnet.request.incomplete", "true");
    send_apdu(h2, A, BYTES(0x08, 0x05, 0x21, 0x01, 0x02, 0x0f, 0x55, 0x3e, 0x21, 0x05, 0x3f));
    CU_ASSERT_EQUAL(ots_harness_count(h2, "transaction"), 2);
    for (guint k = 0; k < 3; k++) {
        seg[2] = (guint8)k;
        seg[0] = k == 2 ? 0x38 : 0x3c;
        send_apdu(h2, B, seg, sizeof(seg));
    }
    CU_ASSERT_EQUAL(ots_harness_count(h2, "transaction"), 5);
    FIELD(h2, tx(h2, 2), "status", "\"no_request\"");
    FIELD(h2, tx(h2, 2), "bacnet.response.incomplete", "true");
    CU_ASSERT_EQUAL(alerts(h2, "memcap"), 3);
    ots_harness_end(h2);
    CU_ASSERT(ots_harness_memcap_refused(h2) > 0);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h2), 0);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h2), 0);
}

static void
test_random_garbage(void)
{
    g_autoptr(GRand) rnd = g_rand_new_with_seed(47808);
    for (guint round = 0; round < 20; round++) {
        g_autoptr(OtsHarness) h = harness();
        for (guint k = 0; k < 300; k++) {
            guint8 buf[600];
            gsize n = (gsize)g_rand_int_range(rnd, 1, sizeof(buf));
            for (gsize j = 0; j < n; j++)
                buf[j] = (guint8)g_rand_int(rnd);
            /* Mostly valid headers so the service walkers get exercised. */
            if (n >= 8 && g_rand_int_range(rnd, 0, 4) != 0) {
                buf[0] = 0x81;
                buf[1] = (guint8)g_rand_int_range(rnd, 0, 13);
                buf[2] = (guint8)(n >> 8);
                buf[3] = (guint8)(n & 0xff);
                buf[4] = 0x01;
                buf[5] &= 0xac;
                if (g_rand_boolean(rnd))
                    buf[5] = 0x04;
                buf[6] &= 0x7f;
                buf[7] &= 0x7f;
            }
            OtsDirection dir = g_rand_boolean(rnd) ? A : B;
            ots_harness_set_time(h, T0 + (gint64)k * G_USEC_PER_SEC);
            ots_harness_feed(h, dir, buf, n);
        }
        ots_harness_end(h);
        CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
    }
}

static CU_TestInfo bacnet_tests[] = {
    {"descriptor", test_descriptor},
    {"probe", test_probe},
    {"read property (12)", test_read_property},
    {"confirmed request without service data", test_request_without_service_data},
    {"read property of a device: asset facts", test_read_property_device_facts},
    {"read property answered for another object: named in the answer", test_read_property_other_answer},
    {"read property multiple (14)", test_read_property_multiple},
    {"write property (15), priority", test_write_property},
    {"write property multiple (16)", test_write_property_multiple},
    {"a finished request's memory reused", test_request_memory_reused},
    {"error, reject, abort", test_error_reject_abort},
    {"reinitialize device, DCC: no password", test_reinitialize_and_dcc},
    {"atomic read/write file", test_atomic_files},
    {"subscribe COV and notifications", test_subscribe_cov_and_notifications},
    {"who-is / i-am and asset", test_who_is_i_am},
    {"who-has / i-have / time sync", test_who_has_i_have_time_sync},
    {"segmented complex ACK reassembled", test_segmented_complex_ack},
    {"segmented request reassembled", test_segmented_request},
    {"segmented request and answer, windows, negative ACK", test_segmented_both_ways},
    {"segment ACK of no segmented message", test_segment_ack_alone},
    {"ACK of the last segment missing", test_segmented_final_ack_missing},
    {"segmented answer aborted", test_segmented_aborted},
    {"segments out of order / without start", test_segment_out_of_order},
    {"segmented message bounded", test_segment_overflow},
    {"segment and segment ACK lists bounded", test_segment_lists_bounded},
    {"forwarded NPDU and routing fields", test_forwarded_and_routed},
    {"a header that changes between transactions", test_header_changes},
    {"network-layer messages", test_network_messages},
    {"BVLC BBMD / foreign-device functions", test_bvlc_functions},
    {"malformed BVLC / NPDU / APDU headers", test_malformed_headers},
    {"malformed service data", test_malformed_service_data},
    {"response without request", test_response_without_request},
    {"requests from both sides", test_server_initiated_request},
    {"unanswered at flow end and after 30 s", test_unanswered_end_and_timeout},
    {"invoke id reuse, pending bound", test_invoke_id_reuse_and_bound},
    {"memory budget: every charge refunded", test_memcap_balanced},
    {"memory budget: requests reported at once", test_memcap_requests},
    {"memory budget: reassembly abandoned", test_memcap_reassembly},
    {"random garbage never crashes", test_random_garbage},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES                                                                            \
    {                                                                                              \
        "bacnet", NULL, NULL, NULL, NULL, bacnet_tests                                             \
    }
#include "cunit-main.h"
