/* SPDX-License-Identifier: Apache-2.0 */

/* Modbus/TCP dissector tests: byte arrays fed through the dissector harness
 * exactly as the pipeline feeds reassembled TCP, events checked field by
 * field. */

#include <stdio.h>
#include <CUnit/CUnit.h>
#include <otsensor/dissector.h>
#include "core/dissect/harness.h"
#include "dissector-test.h"

const OtsPluginHeader *ots_plugin_get_info(void);

#define REQ OTS_DIR_TO_SERVER
#define RSP OTS_DIR_TO_CLIENT
#define T0 ((gint64)1700000000 * G_USEC_PER_SEC)

/* A PDU literal and its length, for send(). */
#define PDU(...) (const guint8[]){__VA_ARGS__}, sizeof((const guint8[]){__VA_ARGS__})

static const OtsDissectorInfo *
modbus(void)
{
    return (const OtsDissectorInfo *)ots_plugin_get_info();
}

static OtsHarness *
harness(void)
{
    OtsHarness *h = ots_harness_new(modbus(), OTS_L4_TCP, 502);
    ots_harness_set_time(h, T0);
    return h;
}

/* Writes the MBAP header + @pdu into @out; returns the ADU length. */
static gsize
adu(guint8 *out, guint16 tid, guint8 unit, const guint8 *pdu, gsize n)
{
    out[0] = tid >> 8;
    out[1] = tid & 0xff;
    out[2] = 0;
    out[3] = 0;
    out[4] = (guint8)((n + 1) >> 8);
    out[5] = (guint8)((n + 1) & 0xff);
    out[6] = unit;
    memcpy(out + 7, pdu, n);
    return n + 7;
}

static OtsParseResult
send(OtsHarness *h, OtsDirection dir, guint16 tid, guint8 unit, const guint8 *pdu, gsize n)
{
    guint8 buf[300];
    g_assert(n <= 253);
    return ots_harness_feed(h, dir, buf, adu(buf, tid, unit, pdu, n));
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
    const OtsDissectorInfo *d = modbus();
    CU_ASSERT_EQUAL(d->abi_major, OTS_ABI_MAJOR);
    CU_ASSERT(d->abi_minor <= OTS_ABI_MINOR);
    CU_ASSERT_EQUAL(d->kind, OTS_PLUGIN_KIND_DISSECTOR);
    CU_ASSERT_STRING_EQUAL(d->name, "modbus");
    CU_ASSERT_EQUAL(d->tcp_ports[0], 502);
    CU_ASSERT_EQUAL(d->tcp_ports[1], 0);
    CU_ASSERT_PTR_NOT_NULL(d->probe);
    CU_ASSERT_PTR_NOT_NULL(d->parse);
    CU_ASSERT_PTR_NOT_NULL(d->gap);
    CU_ASSERT_PTR_NOT_NULL(d->flow_end);
    CU_ASSERT_PTR_NOT_NULL(d->tick);
}

static OtsProbeResult
probe(OtsDirection dir, const guint8 *data, gsize n)
{
    OtsReader r = OTS_READER_INIT(data, n);
    return modbus()->probe(&r, dir, OTS_L4_TCP);
}

static void
test_probe(void)
{
    static const guint8 read_req[] = {0, 1, 0, 0, 0, 6, 4, 3, 0, 1, 0, 1};
    static const guint8 read_rsp[] = {0, 1, 0, 0, 0, 5, 4, 3, 2, 0, 0xaa};
    static const guint8 exc_rsp[] = {0, 1, 0, 0, 0, 3, 4, 0x83, 2};
    static const guint8 bad_pid[] = {0, 1, 0, 7, 0, 6, 4, 3, 0, 1, 0, 1};
    static const guint8 bad_len[] = {0, 1, 0, 0, 1, 0, 4, 3, 0, 1, 0, 1};
    static const guint8 bad_fc[] = {0, 1, 0, 0, 0, 6, 4, 99, 0, 1, 0, 1};
    static const guint8 http[] = "GET / HTTP/1.1\r\n";

    CU_ASSERT_EQUAL(probe(REQ, read_req, sizeof(read_req)), OTS_PROBE_YES);
    CU_ASSERT_EQUAL(probe(RSP, read_rsp, sizeof(read_rsp)), OTS_PROBE_YES);
    CU_ASSERT_EQUAL(probe(RSP, exc_rsp, sizeof(exc_rsp)), OTS_PROBE_YES);
    /* An exception code is not a request. */
    CU_ASSERT_EQUAL(probe(REQ, exc_rsp, sizeof(exc_rsp)), OTS_PROBE_NO);
    CU_ASSERT_EQUAL(probe(REQ, bad_pid, sizeof(bad_pid)), OTS_PROBE_NO);
    CU_ASSERT_EQUAL(probe(REQ, bad_len, sizeof(bad_len)), OTS_PROBE_NO);
    CU_ASSERT_EQUAL(probe(REQ, bad_fc, sizeof(bad_fc)), OTS_PROBE_NO);
    CU_ASSERT_EQUAL(probe(REQ, http, sizeof(http) - 1), OTS_PROBE_NO);
    /* Fewer than 8 bytes cannot decide. */
    CU_ASSERT_EQUAL(probe(REQ, read_req, 7), OTS_PROBE_NEED_MORE);
    CU_ASSERT_EQUAL(probe(REQ, read_req, 0), OTS_PROBE_NEED_MORE);
    /* A header that fits, with the PDU still to come. */
    CU_ASSERT_EQUAL(probe(REQ, read_req, 9), OTS_PROBE_NEED_MORE);
    /* Wrong PDU size for the function: not a plausible request. */
    static const guint8 short_req[] = {0, 1, 0, 0, 0, 4, 4, 3, 0, 1};
    CU_ASSERT_EQUAL(probe(REQ, short_req, sizeof(short_req)), OTS_PROBE_NO);
}

/* ---- reads -------------------------------------------------------------- */

static void
test_read_coils(void)
{
    g_autoptr(OtsHarness) h = harness();
    CU_ASSERT_EQUAL(send(h, REQ, 2, 5, PDU(0x01, 0x00, 0x01, 0x00, 0x08)), OTS_PARSE_OK);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    ots_harness_set_time(h, T0 + 94);
    CU_ASSERT_EQUAL(send(h, RSP, 2, 5, PDU(0x01, 0x01, 0xe9)), OTS_PARSE_OK);
    gint i = tx(h, 0);
    FIELD(h, i, "function", "1");
    FIELD(h, i, "function_name", "\"read_coils\"");
    FIELD(h, i, "op_class", "\"read\"");
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "latency_us", "94");
    FIELD(h, i, "modbus.transaction_id", "2");
    FIELD(h, i, "modbus.unit_id", "5");
    FIELD(h, i, "modbus.address", "1");
    FIELD(h, i, "modbus.quantity", "8");
    FIELD(h, i, "modbus.response_byte_count", "1");
    FIELD(h, i, "modbus.values", "[true,false,false,true,false,true,true,true]");
    FIELD(h, i, "modbus.values_truncated", "false");
    ABSENT(h, i, "modbus.exception_code");
    check_clean(h);
}

static void
test_read_discrete_inputs(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* 20 inputs: 3 bytes, only the first 16 values are reported. */
    send(h, REQ, 7, 1, PDU(0x02, 0x00, 0xc4, 0x00, 0x14));
    send(h, RSP, 7, 1, PDU(0x02, 0x03, 0xac, 0xdb, 0x0f));
    gint i = tx(h, 0);
    FIELD(h, i, "function_name", "\"read_discrete_inputs\"");
    FIELD(h, i, "op_class", "\"read\"");
    FIELD(h, i, "modbus.address", "196");
    FIELD(h, i, "modbus.quantity", "20");
    FIELD(h, i, "modbus.response_byte_count", "3");
    /* 0xac = 1010 1100, 0xdb = 1101 1011, LSB first. */
    FIELD(
        h, i, "modbus.values",
        "[false,false,true,true,false,true,false,true,true,true,false,true,true,false,true,true]");
    FIELD(h, i, "modbus.values_truncated", "true");
    check_clean(h);
}

static void
test_read_registers(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, 5, 4, PDU(0x03, 0x00, 0x6b, 0x00, 0x03));
    send(h, RSP, 5, 4, PDU(0x03, 0x06, 0x02, 0x2b, 0x00, 0x00, 0x00, 0x64));
    send(h, REQ, 6, 4, PDU(0x04, 0x00, 0x08, 0x00, 0x01));
    send(h, RSP, 6, 4, PDU(0x04, 0x02, 0x00, 0x0a));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "3");
    FIELD(h, i, "function_name", "\"read_holding_registers\"");
    FIELD(h, i, "op_class", "\"read\"");
    FIELD(h, i, "modbus.address", "107");
    FIELD(h, i, "modbus.quantity", "3");
    FIELD(h, i, "modbus.response_byte_count", "6");
    FIELD(h, i, "modbus.values", "[555,0,100]");
    FIELD(h, i, "modbus.values_truncated", "false");
    i = tx(h, 1);
    FIELD(h, i, "function", "4");
    FIELD(h, i, "function_name", "\"read_input_registers\"");
    FIELD(h, i, "modbus.address", "8");
    FIELD(h, i, "modbus.values", "[10]");
    check_clean(h);
}

static void
test_read_registers_truncated(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint8 rsp[2 + 2 * 125];
    rsp[0] = 0x03;
    rsp[1] = 250;
    for (guint k = 0; k < 125; k++) {
        rsp[2 + 2 * k] = 0;
        rsp[3 + 2 * k] = (guint8)k;
    }
    send(h, REQ, 1, 1, PDU(0x03, 0x00, 0x00, 0x00, 125));
    send(h, RSP, 1, 1, rsp, sizeof(rsp));
    gint i = tx(h, 0);
    FIELD(h, i, "modbus.quantity", "125");
    FIELD(h, i, "modbus.response_byte_count", "250");
    FIELD(h, i, "modbus.values", "[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]");
    FIELD(h, i, "modbus.values_truncated", "true");
    check_clean(h);
}

/* ---- writes ------------------------------------------------------------- */

static void
test_write_single(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, 9, 6, PDU(0x05, 0x00, 0xac, 0xff, 0x00));
    send(h, RSP, 9, 6, PDU(0x05, 0x00, 0xac, 0xff, 0x00));
    send(h, REQ, 10, 7, PDU(0x06, 0x00, 0x01, 0xab, 0xcd));
    send(h, RSP, 10, 7, PDU(0x06, 0x00, 0x01, 0xab, 0xcd));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "5");
    FIELD(h, i, "function_name", "\"write_single_coil\"");
    FIELD(h, i, "op_class", "\"write\"");
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "modbus.address", "172");
    FIELD(h, i, "modbus.values", "[true]");
    ABSENT(h, i, "modbus.response_address");
    i = tx(h, 1);
    FIELD(h, i, "function", "6");
    FIELD(h, i, "function_name", "\"write_single_register\"");
    FIELD(h, i, "op_class", "\"write\"");
    FIELD(h, i, "modbus.address", "1");
    FIELD(h, i, "modbus.values", "[43981]");
    check_clean(h);
}

static void
test_write_multiple(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* 10 coils from 20: 0xcd 0x01 */
    send(h, REQ, 13, 7, PDU(0x0f, 0x00, 0x13, 0x00, 0x0a, 0x02, 0xcd, 0x01));
    send(h, RSP, 13, 7, PDU(0x0f, 0x00, 0x13, 0x00, 0x0a));
    send(h, REQ, 14, 7, PDU(0x10, 0x00, 0x01, 0x00, 0x02, 0x04, 0x00, 0x0a, 0x01, 0x02));
    send(h, RSP, 14, 7, PDU(0x10, 0x00, 0x01, 0x00, 0x02));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "15");
    FIELD(h, i, "function_name", "\"write_multiple_coils\"");
    FIELD(h, i, "op_class", "\"write\"");
    FIELD(h, i, "modbus.address", "19");
    FIELD(h, i, "modbus.quantity", "10");
    FIELD(h, i, "modbus.byte_count", "2");
    FIELD(h, i, "modbus.values", "[true,false,true,true,false,false,true,true,true,false]");
    FIELD(h, i, "modbus.values_truncated", "false");
    i = tx(h, 1);
    FIELD(h, i, "function", "16");
    FIELD(h, i, "function_name", "\"write_multiple_registers\"");
    FIELD(h, i, "modbus.address", "1");
    FIELD(h, i, "modbus.quantity", "2");
    FIELD(h, i, "modbus.byte_count", "4");
    FIELD(h, i, "modbus.values", "[10,258]");
    check_clean(h);
}

static void
test_mask_write_and_read_write(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, 18, 4, PDU(0x16, 0x00, 0x04, 0x00, 0xf2, 0x00, 0x25));
    send(h, RSP, 18, 4, PDU(0x16, 0x00, 0x04, 0x00, 0xf2, 0x00, 0x25));
    send(h, REQ, 20, 6,
         PDU(0x17, 0x00, 0x03, 0x00, 0x02, 0x00, 0x0e, 0x00, 0x03, 0x06, 0x00, 0xff, 0x00, 0xfe,
             0x00, 0xfd));
    send(h, RSP, 20, 6, PDU(0x17, 0x04, 0x00, 0xfe, 0x0a, 0xcd));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "22");
    FIELD(h, i, "function_name", "\"mask_write_register\"");
    FIELD(h, i, "op_class", "\"write\"");
    FIELD(h, i, "modbus.address", "4");
    FIELD(h, i, "modbus.and_mask", "242");
    FIELD(h, i, "modbus.or_mask", "37");
    i = tx(h, 1);
    FIELD(h, i, "function", "23");
    FIELD(h, i, "function_name", "\"read_write_multiple_registers\"");
    FIELD(h, i, "op_class", "\"write\"");
    FIELD(h, i, "modbus.read_address", "3");
    FIELD(h, i, "modbus.read_quantity", "2");
    FIELD(h, i, "modbus.write_address", "14");
    FIELD(h, i, "modbus.write_quantity", "3");
    FIELD(h, i, "modbus.byte_count", "6");
    FIELD(h, i, "modbus.values", "[255,254,253]");
    FIELD(h, i, "modbus.response_byte_count", "4");
    FIELD(h, i, "modbus.read_values", "[254,2765]");
    FIELD(h, i, "modbus.read_values_truncated", "false");
    check_clean(h);
}

/* ---- diagnostics -------------------------------------------------------- */

static void
test_exception_status_and_counters(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, 11, 2, PDU(0x07));
    send(h, RSP, 11, 2, PDU(0x07, 0x6d));
    send(h, REQ, 12, 2, PDU(0x0b));
    send(h, RSP, 12, 2, PDU(0x0b, 0xff, 0xff, 0x01, 0x08));
    send(h, REQ, 13, 2, PDU(0x0c));
    send(h, RSP, 13, 2, PDU(0x0c, 0x08, 0x00, 0x00, 0x01, 0x08, 0x01, 0x21, 0x20, 0x00));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "7");
    FIELD(h, i, "function_name", "\"read_exception_status\"");
    FIELD(h, i, "op_class", "\"diagnostics\"");
    FIELD(h, i, "modbus.exception_status", "109");
    i = tx(h, 1);
    FIELD(h, i, "function_name", "\"get_comm_event_counter\"");
    FIELD(h, i, "op_class", "\"diagnostics\"");
    FIELD(h, i, "modbus.comm_status", "65535");
    FIELD(h, i, "modbus.event_count", "264");
    i = tx(h, 2);
    FIELD(h, i, "function_name", "\"get_comm_event_log\"");
    FIELD(h, i, "modbus.response_byte_count", "8");
    FIELD(h, i, "modbus.comm_status", "0");
    FIELD(h, i, "modbus.event_count", "264");
    FIELD(h, i, "modbus.message_count", "289");
    FIELD(h, i, "modbus.events", "\"2000\"");
    check_clean(h);
}

static void
test_diagnostics(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, 1, 2, PDU(0x08, 0x00, 0x00, 0xa5, 0x37));
    send(h, RSP, 1, 2, PDU(0x08, 0x00, 0x00, 0xa5, 0x37));
    send(h, REQ, 2, 2, PDU(0x08, 0x00, 0x01, 0xff, 0x00));
    send(h, RSP, 2, 2, PDU(0x08, 0x00, 0x01, 0xff, 0x00));
    send(h, REQ, 3, 2, PDU(0x08, 0x00, 0x04, 0x00, 0x00));
    send(h, REQ, 4, 2, PDU(0x08, 0x00, 0x0a, 0x00, 0x00));
    send(h, RSP, 4, 2, PDU(0x08, 0x00, 0x0a, 0x00, 0x00));
    send(h, REQ, 5, 2, PDU(0x08, 0x00, 0x0e, 0x00, 0x00));
    send(h, RSP, 5, 2, PDU(0x08, 0x00, 0x0e, 0x01, 0x2c));
    ots_harness_end(h);

    gint i = tx(h, 0);
    FIELD(h, i, "function", "8");
    FIELD(h, i, "function_name", "\"diagnostics\"");
    FIELD(h, i, "op_class", "\"diagnostics\"");
    FIELD(h, i, "modbus.sub_function", "0");
    FIELD(h, i, "modbus.sub_function_name", "\"return_query_data\"");
    FIELD(h, i, "modbus.data", "\"a537\"");
    FIELD(h, i, "modbus.response_data", "\"a537\"");
    i = tx(h, 1);
    FIELD(h, i, "op_class", "\"restart\"");
    FIELD(h, i, "modbus.sub_function", "1");
    FIELD(h, i, "modbus.sub_function_name", "\"restart_communications\"");
    /* Listen-only mode gets no response by design: reported at flow end. */
    i = tx(h, 4);
    FIELD(h, i, "status", "\"unanswered\"");
    FIELD(h, i, "op_class", "\"communication_control\"");
    FIELD(h, i, "modbus.sub_function_name", "\"force_listen_only_mode\"");
    i = tx(h, 2);
    FIELD(h, i, "op_class", "\"diagnostics\"");
    FIELD(h, i, "modbus.sub_function_name", "\"clear_counters_and_diagnostic_register\"");
    i = tx(h, 3);
    FIELD(h, i, "modbus.sub_function_name", "\"return_server_message_count\"");
    FIELD(h, i, "modbus.response_data", "\"012c\"");
    check_clean(h);
}

static void
test_report_server_id(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, 15, 2, PDU(0x11));
    /* A text server id with the run indicator last, as the Zeek sample. */
    send(h, RSP, 15, 2, PDU(0x11, 0x06, 'P', 'L', 'C', '-', '7', 0xff));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "17");
    FIELD(h, i, "function_name", "\"report_server_id\"");
    FIELD(h, i, "op_class", "\"diagnostics\"");
    FIELD(h, i, "modbus.response_byte_count", "6");
    FIELD(h, i, "modbus.server_id", "\"504c432d37\"");
    FIELD(h, i, "modbus.server_id_text", "\"PLC-7\"");
    FIELD(h, i, "modbus.run_indicator", "true");
    gint a = ots_harness_find(h, "asset", 0);
    CU_ASSERT(a > i);
    FIELD(h, a, "role", "\"controller\"");
    FIELD(h, a, "server_id_text", "\"PLC-7\"");
    FIELD(h, a, "run_indicator", "\"on\"");
    FIELD(h, a, "modbus.unit_id", "2");

    /* One-byte id, run indicator, additional data. */
    send(h, REQ, 16, 3, PDU(0x11));
    send(h, RSP, 16, 3, PDU(0x11, 0x04, 0x01, 0x00, 0x01, 0x02));
    i = tx(h, 1);
    FIELD(h, i, "modbus.server_id", "\"01\"");
    ABSENT(h, i, "modbus.server_id_text");
    FIELD(h, i, "modbus.run_indicator", "false");
    FIELD(h, i, "modbus.additional_data", "\"0102\"");
    a = ots_harness_find(h, "asset", 1);
    FIELD(h, a, "run_indicator", "\"off\"");
    check_clean(h);
}

/* ---- files and FIFO ----------------------------------------------------- */

static void
test_file_records(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, 16, 8,
         PDU(0x14, 0x0e, 0x06, 0x00, 0x04, 0x00, 0x01, 0x00, 0x02, 0x06, 0x00, 0x03, 0x00, 0x09,
             0x00, 0x02));
    send(h, RSP, 16, 8,
         PDU(0x14, 0x0c, 0x05, 0x06, 0x0d, 0xfe, 0x00, 0x20, 0x05, 0x06, 0x33, 0xcd, 0x00, 0x40));
    send(h, REQ, 17, 8,
         PDU(0x15, 0x0d, 0x06, 0x00, 0x04, 0x00, 0x07, 0x00, 0x03, 0x06, 0xaf, 0x04, 0xbe, 0x10,
             0x0d));
    send(h, RSP, 17, 8,
         PDU(0x15, 0x0d, 0x06, 0x00, 0x04, 0x00, 0x07, 0x00, 0x03, 0x06, 0xaf, 0x04, 0xbe, 0x10,
             0x0d));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "20");
    FIELD(h, i, "function_name", "\"read_file_record\"");
    FIELD(h, i, "op_class", "\"read\"");
    FIELD(h, i, "modbus.byte_count", "14");
    FIELD(h, i, "modbus.file_records.0.reference_type", "6");
    FIELD(h, i, "modbus.file_records.0.file_number", "4");
    FIELD(h, i, "modbus.file_records.0.record_number", "1");
    FIELD(h, i, "modbus.file_records.0.record_length", "2");
    FIELD(h, i, "modbus.file_records.1.file_number", "3");
    FIELD(h, i, "modbus.file_records.1.record_number", "9");
    FIELD(h, i, "modbus.response_byte_count", "12");
    FIELD(h, i, "modbus.response_file_records.0.byte_count", "5");
    FIELD(h, i, "modbus.response_file_records.0.reference_type", "6");
    FIELD(h, i, "modbus.response_file_records.0.data", "\"0dfe0020\"");
    FIELD(h, i, "modbus.response_file_records.1.data", "\"33cd0040\"");
    i = tx(h, 1);
    FIELD(h, i, "function", "21");
    FIELD(h, i, "function_name", "\"write_file_record\"");
    FIELD(h, i, "op_class", "\"write\"");
    FIELD(h, i, "modbus.byte_count", "13");
    FIELD(h, i, "modbus.file_records.0.file_number", "4");
    FIELD(h, i, "modbus.file_records.0.record_number", "7");
    FIELD(h, i, "modbus.file_records.0.record_length", "3");
    FIELD(h, i, "modbus.file_records.0.data", "\"06af04be100d\"");
    FIELD(h, i, "modbus.response_byte_count", "13");
    check_clean(h);
}

static void
test_fifo(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, 22, 10, PDU(0x18, 0x04, 0xde));
    send(h, RSP, 22, 10, PDU(0x18, 0x00, 0x06, 0x00, 0x02, 0x01, 0xb8, 0x12, 0x84));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "24");
    FIELD(h, i, "function_name", "\"read_fifo_queue\"");
    FIELD(h, i, "op_class", "\"read\"");
    FIELD(h, i, "modbus.address", "1246");
    FIELD(h, i, "modbus.response_byte_count", "6");
    FIELD(h, i, "modbus.fifo_count", "2");
    FIELD(h, i, "modbus.values", "[440,4740]");
    check_clean(h);
}

/* ---- encapsulated interface ---------------------------------------------- */

static void
test_device_identification(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, 23, 1, PDU(0x2b, 0x0e, 0x03, 0x00));
    send(h, RSP, 23, 1,
         PDU(0x2b, 0x0e, 0x03, 0x83, 0x00, 0x00, 0x09, /* header, 9 objects */
             0x00, 0x04, 'A', 'c', 'm', 'e',           /* vendor */
             0x01, 0x03, 'X', '-', '1',                /* product code */
             0x02, 0x04, 'V', '2', '.', '1',           /* revision */
             0x03, 0x03, 'a', '.', 'b',                /* vendor url */
             0x04, 0x03, 'P', 'L', 'C',                /* product name */
             0x05, 0x02, 'M', '5',                     /* model name */
             0x06, 0x03, 'a', 'p', 'p',                /* user application */
             0x80, 0x02, 'S', 'N',                     /* vendor specific, text */
             0x81, 0x02, 0x01, 0x02));                 /* vendor specific, binary */
    gint i = tx(h, 0);
    FIELD(h, i, "function", "43");
    FIELD(h, i, "function_name", "\"read_device_identification\"");
    FIELD(h, i, "op_class", "\"discovery\"");
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "modbus.mei_type", "14");
    FIELD(h, i, "modbus.read_device_id_code", "3");
    FIELD(h, i, "modbus.object_id", "0");
    FIELD(h, i, "modbus.conformity_level", "131");
    FIELD(h, i, "modbus.more_follows", "false");
    FIELD(h, i, "modbus.next_object_id", "0");
    FIELD(h, i, "modbus.number_of_objects", "9");
    FIELD(h, i, "modbus.objects.0.id", "0");
    FIELD(h, i, "modbus.objects.0.name", "\"vendor\"");
    FIELD(h, i, "modbus.objects.0.value", "\"Acme\"");
    FIELD(h, i, "modbus.objects.7.id", "128");
    ABSENT(h, i, "modbus.objects.7.name");
    FIELD(h, i, "modbus.objects.7.value", "\"SN\"");
    FIELD(h, i, "modbus.objects.8.value_hex", "\"0102\"");
    ABSENT(h, i, "modbus.objects.8.value");

    gint a = ots_harness_find(h, "asset", 0);
    CU_ASSERT(a > i);
    FIELD(h, a, "role", "\"controller\"");
    FIELD(h, a, "vendor", "\"Acme\"");
    FIELD(h, a, "product_code", "\"X-1\"");
    FIELD(h, a, "revision", "\"V2.1\"");
    FIELD(h, a, "firmware", "\"V2.1\"");
    FIELD(h, a, "vendor_url", "\"a.b\"");
    FIELD(h, a, "product_name", "\"PLC\"");
    FIELD(h, a, "product", "\"PLC\"");
    FIELD(h, a, "model_name", "\"M5\"");
    FIELD(h, a, "user_application_name", "\"app\"");
    FIELD(h, a, "extra.0.object_id", "128");
    FIELD(h, a, "extra.0.value", "\"SN\"");
    FIELD(h, a, "extra.1.object_id", "129");
    FIELD(h, a, "extra.1.value_hex", "\"0102\"");
    FIELD(h, a, "modbus.unit_id", "1");
    CU_ASSERT_EQUAL(ots_harness_count(h, "asset"), 1);
    check_clean(h);
}

static void
test_canopen(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, 3, 1, PDU(0x2b, 0x0d, 0x00, 0x01, 0x02));
    send(h, RSP, 3, 1, PDU(0x2b, 0x0d, 0x00, 0x01, 0x02, 0x03));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "43");
    FIELD(h, i, "function_name", "\"canopen_general_reference\"");
    FIELD(h, i, "op_class", "\"other\"");
    FIELD(h, i, "modbus.mei_type", "13");
    FIELD(h, i, "modbus.data", "\"000102\"");
    FIELD(h, i, "modbus.response_data", "\"00010203\"");
    CU_ASSERT_EQUAL(ots_harness_count(h, "asset"), 0);
    check_clean(h);
}

/* ---- exceptions and odd codes ------------------------------------------- */

static void
test_exceptions(void)
{
    static const char *const names[] = {
        NULL,
        "illegal_function",
        "illegal_data_address",
        "illegal_data_value",
        "server_device_failure",
        "acknowledge",
        "server_device_busy",
        "negative_acknowledge",
        "memory_parity_error",
        NULL,
        "gateway_path_unavailable",
        "gateway_target_failed_to_respond",
    };
    g_autoptr(OtsHarness) h = harness();
    guint n = 0;
    for (guint code = 1; code < G_N_ELEMENTS(names); code++) {
        if (!names[code])
            continue;
        send(h, REQ, (guint16)code, 1, PDU(0x03, 0x02, 0x58, 0x00, 0x0a));
        send(h, RSP, (guint16)code, 1, PDU(0x83, (guint8)code));
        gint i = tx(h, n++);
        g_autofree gchar *c = g_strdup_printf("%u", code);
        g_autofree gchar *name = g_strdup_printf("\"%s\"", names[code]);
        FIELD(h, i, "function", "3");
        FIELD(h, i, "function_name", "\"read_holding_registers\"");
        FIELD(h, i, "status", "\"exception\"");
        FIELD(h, i, "modbus.address", "600");
        FIELD(h, i, "modbus.quantity", "10");
        FIELD(h, i, "modbus.exception_code", c);
        FIELD(h, i, "modbus.exception", name);
        ABSENT(h, i, "modbus.values");
    }
    check_clean(h);

    /* An exception code the spec does not define. */
    send(h, REQ, 99, 1, PDU(0x01, 0x00, 0x00, 0x00, 0x01));
    send(h, RSP, 99, 1, PDU(0x81, 0x09));
    gint i = tx(h, n);
    FIELD(h, i, "status", "\"exception\"");
    FIELD(h, i, "modbus.exception_code", "9");
    FIELD(h, i, "modbus.exception", "\"unknown\"");
    CU_ASSERT_EQUAL(alerts(h, "bad_exception_code"), 1);
}

static void
test_user_defined_and_unknown(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, 1, 1, PDU(65, 0x01, 0x02));
    send(h, RSP, 1, 1, PDU(65, 0x03));
    send(h, REQ, 2, 1, PDU(110));
    send(h, RSP, 2, 1, PDU(110 | 0x80, 0x01));
    send(h, REQ, 3, 1, PDU(90, 0x00, 0x02));
    send(h, RSP, 3, 1, PDU(90, 0x00, 0xfe));
    gint i = tx(h, 0);
    FIELD(h, i, "function", "65");
    FIELD(h, i, "function_name", "\"user_defined\"");
    FIELD(h, i, "op_class", "\"other\"");
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "modbus.data", "\"0102\"");
    FIELD(h, i, "modbus.response_data", "\"03\"");
    i = tx(h, 1);
    FIELD(h, i, "function", "110");
    FIELD(h, i, "function_name", "\"user_defined\"");
    FIELD(h, i, "status", "\"exception\"");
    FIELD(h, i, "modbus.exception", "\"illegal_function\"");
    i = tx(h, 2);
    FIELD(h, i, "function", "90");
    FIELD(h, i, "function_name", "\"unknown\"");
    FIELD(h, i, "op_class", "\"other\"");
    FIELD(h, i, "modbus.data", "\"0002\"");
    check_clean(h);

    /* Function code 0 is not a request. */
    send(h, REQ, 4, 1, PDU(0x00, 0x01));
    CU_ASSERT_EQUAL(alerts(h, "bad_function_code"), 1);
}

/* ---- framing ------------------------------------------------------------ */

static void
test_several_pdus_one_feed(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint8 buf[128];
    gsize n = 0;
    n += adu(buf + n, 1, 1, PDU(0x03, 0x00, 0x00, 0x00, 0x01));
    n += adu(buf + n, 2, 1, PDU(0x01, 0x00, 0x10, 0x00, 0x03));
    n += adu(buf + n, 3, 2, PDU(0x06, 0x00, 0x05, 0x12, 0x34));
    CU_ASSERT_EQUAL(ots_harness_feed(h, REQ, buf, n), OTS_PARSE_OK);
    /* Answered out of order, all in one segment. */
    n = 0;
    n += adu(buf + n, 3, 2, PDU(0x06, 0x00, 0x05, 0x12, 0x34));
    n += adu(buf + n, 1, 1, PDU(0x03, 0x02, 0x00, 0x07));
    n += adu(buf + n, 2, 1, PDU(0x01, 0x01, 0x05));
    CU_ASSERT_EQUAL(ots_harness_feed(h, RSP, buf, n), OTS_PARSE_OK);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
    FIELD(h, tx(h, 0), "modbus.transaction_id", "3");
    FIELD(h, tx(h, 0), "function", "6");
    FIELD(h, tx(h, 0), "status", "\"ok\"");
    FIELD(h, tx(h, 1), "modbus.transaction_id", "1");
    FIELD(h, tx(h, 1), "modbus.values", "[7]");
    FIELD(h, tx(h, 2), "modbus.transaction_id", "2");
    FIELD(h, tx(h, 2), "modbus.values", "[true,false,true]");
    check_clean(h);
}

static void
test_split_byte_by_byte(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint8 req[64], rsp[64];
    gsize nq = adu(req, 0x1234, 9, PDU(0x10, 0x00, 0x01, 0x00, 0x02, 0x04, 0x00, 0x0a, 0x01, 0x02));
    gsize nr = adu(rsp, 0x1234, 9, PDU(0x10, 0x00, 0x01, 0x00, 0x02));
    for (gsize k = 0; k < nq; k++) {
        OtsParseResult res = ots_harness_feed(h, REQ, req + k, 1);
        CU_ASSERT_EQUAL(res, k + 1 < nq ? OTS_PARSE_NEED_MORE : OTS_PARSE_OK);
    }
    for (gsize k = 0; k < nr; k++) {
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
        OtsParseResult res = ots_harness_feed(h, RSP, rsp + k, 1);
        CU_ASSERT_EQUAL(res, k + 1 < nr ? OTS_PARSE_NEED_MORE : OTS_PARSE_OK);
    }
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    gint i = tx(h, 0);
    FIELD(h, i, "modbus.transaction_id", "4660");
    FIELD(h, i, "modbus.unit_id", "9");
    FIELD(h, i, "modbus.values", "[10,258]");
    FIELD(h, i, "status", "\"ok\"");
    check_clean(h);
}

static void
test_split_across_pdus(void)
{
    /* Two ADUs cut in three pieces at awkward places. */
    g_autoptr(OtsHarness) h = harness();
    guint8 buf[64];
    gsize n = adu(buf, 1, 1, PDU(0x03, 0x00, 0x00, 0x00, 0x02));
    n += adu(buf + n, 2, 1, PDU(0x03, 0x00, 0x10, 0x00, 0x01));
    CU_ASSERT_EQUAL(ots_harness_feed(h, REQ, buf, 5), OTS_PARSE_NEED_MORE);
    CU_ASSERT_EQUAL(ots_harness_feed(h, REQ, buf + 5, 12), OTS_PARSE_NEED_MORE);
    CU_ASSERT_EQUAL(ots_harness_feed(h, REQ, buf + 17, n - 17), OTS_PARSE_OK);
    send(h, RSP, 1, 1, PDU(0x03, 0x04, 0x00, 0x01, 0x00, 0x02));
    send(h, RSP, 2, 1, PDU(0x03, 0x02, 0x00, 0x03));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    FIELD(h, tx(h, 0), "modbus.values", "[1,2]");
    FIELD(h, tx(h, 1), "modbus.values", "[3]");
    check_clean(h);
}

static void
test_gap_resync(void)
{
    g_autoptr(OtsHarness) h = harness();
    guint8 buf[128];

    /* Half a request, then lost bytes: the rest of it must not be parsed as a header. */
    gsize n = adu(buf, 1, 1, PDU(0x10, 0x00, 0x01, 0x00, 0x02, 0x04, 0x00, 0x03, 0x00, 0x00));
    ots_harness_feed(h, REQ, buf, 6);
    ots_harness_gap(h, REQ, 4);
    gsize m = n - 10;
    memmove(buf, buf + 10, m);
    m += adu(buf + m, 2, 1, PDU(0x03, 0x00, 0x07, 0x00, 0x01));
    ots_harness_feed(h, REQ, buf, m);
    send(h, RSP, 2, 1, PDU(0x03, 0x02, 0x12, 0x34));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    gint i = tx(h, 0);
    FIELD(h, i, "modbus.transaction_id", "2");
    FIELD(h, i, "modbus.address", "7");
    FIELD(h, i, "status", "\"ok\"");
    CU_ASSERT_EQUAL(ots_harness_count(h, "alert"), 0);

    /* Mid-stream start in the response direction: garbage, then a response. */
    send(h, REQ, 3, 1, PDU(0x04, 0x00, 0x01, 0x00, 0x01));
    ots_harness_gap(h, RSP, 0);
    static const guint8 junk[] = {0x00, 0x00, 0xff, 0x13, 0x00, 0x01, 0x17, 0x00, 0x00, 0x00};
    memcpy(buf, junk, sizeof(junk));
    n = sizeof(junk) + adu(buf + sizeof(junk), 3, 1, PDU(0x04, 0x02, 0x00, 0x2a));
    /* Arrives in pieces, so the resync has to wait for a decision. */
    ots_harness_feed(h, RSP, buf, 13);
    ots_harness_feed(h, RSP, buf + 13, n - 13);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    i = tx(h, 1);
    FIELD(h, i, "modbus.transaction_id", "3");
    FIELD(h, i, "modbus.values", "[42]");
    CU_ASSERT_EQUAL(ots_harness_count(h, "alert"), 0);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_bad_length(void)
{
    g_autoptr(OtsHarness) h = harness();
    /* MBAP length 1: no function code. */
    static const guint8 short_len[] = {0, 1, 0, 0, 0, 1, 1};
    ots_harness_feed(h, REQ, short_len, sizeof(short_len));
    CU_ASSERT_EQUAL(alerts(h, "bad_length"), 1);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    /* Framing comes back on the next plausible ADU. */
    send(h, REQ, 2, 1, PDU(0x03, 0x00, 0x00, 0x00, 0x01));
    send(h, RSP, 2, 1, PDU(0x03, 0x02, 0x00, 0x01));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    FIELD(h, tx(h, 0), "modbus.transaction_id", "2");

    /* MBAP length above 254, followed by garbage and a valid ADU. */
    guint8 buf[400];
    memset(buf, 0x41, sizeof(buf));
    buf[0] = 0;
    buf[1] = 3;
    buf[2] = 0;
    buf[3] = 0;
    buf[4] = 0x01;
    buf[5] = 0x2c; /* 300 */
    gsize n = 40 + adu(buf + 40, 3, 1, PDU(0x03, 0x00, 0x00, 0x00, 0x01));
    ots_harness_feed(h, REQ, buf, n);
    CU_ASSERT_EQUAL(alerts(h, "bad_length"), 2);
    send(h, RSP, 3, 1, PDU(0x03, 0x02, 0x00, 0x02));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    FIELD(h, tx(h, 1), "modbus.transaction_id", "3");
    FIELD(h, tx(h, 1), "modbus.values", "[2]");

    /* A PDU too short for its function is still reported. */
    send(h, REQ, 4, 1, PDU(0x03, 0x00, 0x00));
    CU_ASSERT_EQUAL(alerts(h, "bad_length"), 3);
    send(h, REQ, 5, 1, PDU(0x07, 0x00));
    CU_ASSERT_EQUAL(alerts(h, "bad_length"), 4);
    ots_harness_end(h);
    FIELD(h, tx(h, 2), "modbus.transaction_id", "4");
    FIELD(h, tx(h, 2), "modbus.address", "0");
    ABSENT(h, tx(h, 2), "modbus.quantity");
    FIELD(h, tx(h, 2), "status", "\"unanswered\"");
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_bad_protocol_id(void)
{
    g_autoptr(OtsHarness) h = harness();
    static const guint8 bad[] = {0, 1, 0, 5, 0, 6, 1, 3, 0, 0, 0, 1};
    ots_harness_feed(h, REQ, bad, sizeof(bad));
    CU_ASSERT_EQUAL(alerts(h, "bad_protocol_id"), 1);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    gint a = ots_harness_find(h, "alert", 0);
    FIELD(h, a, "category", "\"protocol_anomaly\"");
    FIELD(h, a, "modbus.transaction_id", "1");
    send(h, REQ, 2, 1, PDU(0x03, 0x00, 0x00, 0x00, 0x01));
    send(h, RSP, 2, 1, PDU(0x03, 0x02, 0x00, 0x01));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    CU_ASSERT_EQUAL(ots_harness_count(h, "alert"), 1);
}

/* ---- out-of-spec values -------------------------------------------------- */

static void
test_bad_quantity_and_byte_count(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, 1, 1, PDU(0x03, 0x00, 0x00, 0x00, 0x00));
    CU_ASSERT_EQUAL(alerts(h, "bad_quantity"), 1);
    send(h, RSP, 1, 1, PDU(0x83, 0x03));
    FIELD(h, tx(h, 0), "modbus.quantity", "0");
    FIELD(h, tx(h, 0), "status", "\"exception\"");

    send(h, REQ, 2, 1, PDU(0x03, 0x00, 0x00, 0x00, 126));
    send(h, REQ, 3, 1, PDU(0x01, 0x00, 0x00, 0x07, 0xd1)); /* 2001 coils */
    CU_ASSERT_EQUAL(alerts(h, "bad_quantity"), 3);

    /* Byte count does not match the quantity. */
    send(h, REQ, 4, 1, PDU(0x10, 0x00, 0x01, 0x00, 0x02, 0x02, 0x00, 0x0a));
    CU_ASSERT_EQUAL(alerts(h, "bad_byte_count"), 1);
    send(h, RSP, 4, 1, PDU(0x10, 0x00, 0x01, 0x00, 0x02));
    gint i = tx(h, 1);
    FIELD(h, i, "function", "16");
    FIELD(h, i, "status", "\"ok\"");
    FIELD(h, i, "modbus.byte_count", "2");
    FIELD(h, i, "modbus.values", "[10]");

    /* A read response with fewer registers than asked for. */
    send(h, REQ, 5, 1, PDU(0x04, 0x00, 0x00, 0x00, 0x02));
    send(h, RSP, 5, 1, PDU(0x04, 0x02, 0x00, 0x09));
    CU_ASSERT_EQUAL(alerts(h, "bad_byte_count"), 2);
    FIELD(h, tx(h, 2), "modbus.values", "[9]");

    /* A byte count larger than the bytes that follow. */
    send(h, REQ, 6, 1, PDU(0x0f, 0x00, 0x00, 0x00, 0x10, 0x02, 0xff));
    CU_ASSERT_EQUAL(alerts(h, "bad_byte_count"), 3);

    /* Coil value other than 0x0000 / 0xff00. */
    send(h, REQ, 7, 1, PDU(0x05, 0x00, 0x00, 0x12, 0x34));
    CU_ASSERT_EQUAL(alerts(h, "bad_value"), 1);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_response_mismatch(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, 1, 1, PDU(0x06, 0x00, 0x01, 0x00, 0x03));
    send(h, RSP, 1, 1, PDU(0x06, 0x00, 0x02, 0x00, 0x04));
    CU_ASSERT_EQUAL(alerts(h, "response_mismatch"), 1);
    gint i = tx(h, 0);
    FIELD(h, i, "modbus.address", "1");
    FIELD(h, i, "modbus.values", "[3]");
    FIELD(h, i, "modbus.response_address", "2");
    FIELD(h, i, "modbus.response_values", "[4]");

    /* A different function for the same transaction id. */
    send(h, REQ, 2, 1, PDU(0x03, 0x00, 0x01, 0x00, 0x01));
    send(h, RSP, 2, 1, PDU(0x04, 0x02, 0x00, 0x01));
    CU_ASSERT_EQUAL(alerts(h, "function_mismatch"), 1);
    i = tx(h, 1);
    FIELD(h, i, "function", "3");
    FIELD(h, i, "modbus.response_function", "4");
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

/* ---- pairing ------------------------------------------------------------ */

static void
test_response_without_request(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, RSP, 77, 3, PDU(0x03, 0x04, 0x00, 0x01, 0x00, 0x02));
    CU_ASSERT_EQUAL(alerts(h, "response_without_request"), 1);
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"no_request\"");
    FIELD(h, i, "function", "3");
    FIELD(h, i, "function_name", "\"read_holding_registers\"");
    FIELD(h, i, "modbus.transaction_id", "77");
    FIELD(h, i, "modbus.unit_id", "3");
    FIELD(h, i, "modbus.response_byte_count", "4");
    FIELD(h, i, "modbus.values", "[1,2]");
    ABSENT(h, i, "latency_us");
    ABSENT(h, i, "modbus.address");

    /* Echo responses without a request carry the echoed fields. */
    send(h, RSP, 78, 3, PDU(0x10, 0x00, 0x05, 0x00, 0x02));
    i = tx(h, 1);
    FIELD(h, i, "status", "\"no_request\"");
    FIELD(h, i, "modbus.address", "5");
    FIELD(h, i, "modbus.quantity", "2");

    /* An exception without a request. */
    send(h, RSP, 79, 3, PDU(0x88, 0x01));
    i = tx(h, 2);
    FIELD(h, i, "status", "\"no_request\"");
    FIELD(h, i, "function", "8");
    FIELD(h, i, "modbus.exception", "\"illegal_function\"");
    CU_ASSERT_EQUAL(alerts(h, "response_without_request"), 3);

    /* Same id but another unit: not the same transaction. */
    send(h, REQ, 80, 1, PDU(0x03, 0x00, 0x00, 0x00, 0x01));
    send(h, RSP, 80, 2, PDU(0x03, 0x02, 0x00, 0x00));
    CU_ASSERT_EQUAL(alerts(h, "response_without_request"), 4);
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 5);
    FIELD(h, tx(h, 4), "status", "\"unanswered\"");
    FIELD(h, tx(h, 4), "modbus.unit_id", "1");
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_unanswered_at_end(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, 1, 1, PDU(0x05, 0x00, 0x01, 0xff, 0x00));
    send(h, REQ, 2, 1, PDU(0x03, 0x00, 0x01, 0x00, 0x01));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    gint i = tx(h, 0);
    FIELD(h, i, "status", "\"unanswered\"");
    FIELD(h, i, "function", "5");
    FIELD(h, i, "op_class", "\"write\"");
    FIELD(h, i, "modbus.values", "[true]");
    ABSENT(h, i, "latency_us");
    FIELD(h, tx(h, 1), "modbus.transaction_id", "2");
    check_clean(h);
}

static void
test_unanswered_timeout(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, 1, 1, PDU(0x03, 0x00, 0x01, 0x00, 0x01));
    ots_harness_set_time(h, T0 + 10 * G_USEC_PER_SEC);
    send(h, REQ, 2, 1, PDU(0x03, 0x00, 0x02, 0x00, 0x01));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    /* 31 s later, traffic on the flow lets the dissector expire the first. */
    ots_harness_set_time(h, T0 + 31 * G_USEC_PER_SEC);
    send(h, REQ, 3, 1, PDU(0x03, 0x00, 0x03, 0x00, 0x01));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    FIELD(h, tx(h, 0), "status", "\"unanswered\"");
    FIELD(h, tx(h, 0), "modbus.transaction_id", "1");
    send(h, RSP, 2, 1, PDU(0x03, 0x02, 0x00, 0x05));
    FIELD(h, tx(h, 1), "status", "\"ok\"");
    FIELD(h, tx(h, 1), "latency_us", "21000000");

    /* Time passing without traffic expires requests too, not before 30 s. */
    ots_harness_tick(h, T0 + 60 * G_USEC_PER_SEC);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    ots_harness_tick(h, T0 + 61 * G_USEC_PER_SEC + 1);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
    FIELD(h, tx(h, 2), "status", "\"unanswered\"");
    FIELD(h, tx(h, 2), "modbus.transaction_id", "3");
    check_clean(h);
}

static void
test_pending_overflow(void)
{
    g_autoptr(OtsHarness) h = harness();
    for (guint k = 0; k < 512; k++)
        send(h, REQ, (guint16)k, 1, PDU(0x03, 0x00, 0x01, 0x00, 0x01));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
    send(h, REQ, 512, 1, PDU(0x03, 0x00, 0x01, 0x00, 0x01));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    FIELD(h, tx(h, 0), "status", "\"unanswered\"");
    FIELD(h, tx(h, 0), "modbus.transaction_id", "0");
    /* The newest ones are still paired. */
    send(h, RSP, 512, 1, PDU(0x03, 0x02, 0x00, 0x01));
    FIELD(h, tx(h, 1), "status", "\"ok\"");
    FIELD(h, tx(h, 1), "modbus.transaction_id", "512");
    /* The evicted one is gone: its late response has no request. */
    send(h, RSP, 0, 1, PDU(0x03, 0x02, 0x00, 0x01));
    FIELD(h, tx(h, 2), "status", "\"no_request\"");
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3 + 511);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_reused_transaction_id(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, 0, 1, PDU(0x03, 0x00, 0x01, 0x00, 0x01));
    ots_harness_set_time(h, T0 + 1000);
    send(h, REQ, 0, 1, PDU(0x03, 0x00, 0x02, 0x00, 0x01));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    FIELD(h, tx(h, 0), "status", "\"unanswered\"");
    FIELD(h, tx(h, 0), "modbus.address", "1");
    ots_harness_set_time(h, T0 + 1500);
    send(h, RSP, 0, 1, PDU(0x03, 0x02, 0x00, 0x01));
    FIELD(h, tx(h, 1), "status", "\"ok\"");
    FIELD(h, tx(h, 1), "modbus.address", "2");
    FIELD(h, tx(h, 1), "latency_us", "500");
    check_clean(h);
}

/* ---- memory budget (flows.memcap_mb) ------------------------------------ */

/* What one pending 5-byte request PDU is charged (no budget set: charges are
 * still counted). */
static gsize
request_cost(void)
{
    g_autoptr(OtsHarness) h = harness();
    send(h, REQ, 1, 1, PDU(0x03, 0x00, 0x01, 0x00, 0x01));
    return ots_harness_mem_used(h);
}

static void
test_memcap_balanced(void)
{
    g_autoptr(OtsHarness) h = harness();
    ots_harness_set_memcap(h, 1024 * 1024);
    gsize base = ots_harness_mem_used(h);
    gsize cost = request_cost();
    CU_ASSERT(cost > 5);

    /* Each request is charged until its response frees it. */
    send(h, REQ, 1, 1, PDU(0x03, 0x00, 0x01, 0x00, 0x01));
    send(h, REQ, 2, 1, PDU(0x03, 0x00, 0x02, 0x00, 0x01));
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base + 2 * cost);
    send(h, RSP, 2, 1, PDU(0x03, 0x02, 0x00, 0x05));
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base + cost);
    send(h, RSP, 1, 1, PDU(0x03, 0x02, 0x00, 0x06));
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);

    /* A reused transaction id lets the older request go; an exception
     * answers the newer. */
    send(h, REQ, 3, 1, PDU(0x03, 0x00, 0x01, 0x00, 0x01));
    send(h, REQ, 3, 1, PDU(0x03, 0x00, 0x02, 0x00, 0x01));
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base + cost);
    send(h, RSP, 3, 1, PDU(0x83, 0x02));
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);
    /* A response without its request frees nothing. */
    send(h, RSP, 9, 1, PDU(0x03, 0x02, 0x00, 0x01));
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 5);

    /* Unanswered requests expire after 30 s. */
    send(h, REQ, 4, 1, PDU(0x03, 0x00, 0x01, 0x00, 0x01));
    send(h, REQ, 5, 1, PDU(0x03, 0x00, 0x02, 0x00, 0x01));
    send(h, REQ, 6, 2, PDU(0x03, 0x00, 0x03, 0x00, 0x01));
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base + 3 * cost);
    ots_harness_tick(h, T0 + 40 * G_USEC_PER_SEC);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 8);
    FIELD(h, tx(h, 7), "status", "\"unanswered\"");
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);

    /* A full table lets the oldest go, and its charge with it. */
    for (guint k = 0; k < 512; k++)
        send(h, REQ, (guint16)(100 + k), 1, PDU(0x03, 0x00, 0x01, 0x00, 0x01));
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base + 512 * cost);
    send(h, REQ, 1000, 1, PDU(0x03, 0x00, 0x01, 0x00, 0x01));
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 9);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base + 512 * cost);

    /* Flow end reports the rest and refunds it. */
    ots_harness_end(h);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 9 + 512);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), base);
    CU_ASSERT_EQUAL(ots_harness_memcap_refused(h), 0);
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_memcap_refused(void)
{
    gsize cost = request_cost();

    /* No room for any request: each is reported at once, unanswered. */
    {
        g_autoptr(OtsHarness) h = harness();
        ots_harness_set_memcap(h, 16);
        send(h, REQ, 1, 1, PDU(0x05, 0x00, 0x01, 0xff, 0x00));
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
        gint i = tx(h, 0);
        FIELD(h, i, "status", "\"unanswered\"");
        FIELD(h, i, "function", "5");
        FIELD(h, i, "op_class", "\"write\"");
        FIELD(h, i, "modbus.transaction_id", "1");
        FIELD(h, i, "modbus.values", "[true]");
        ABSENT(h, i, "latency_us");
        send(h, REQ, 2, 1, PDU(0x03, 0x00, 0x07, 0x00, 0x01));
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
        FIELD(h, tx(h, 1), "status", "\"unanswered\"");
        FIELD(h, tx(h, 1), "modbus.transaction_id", "2");
        FIELD(h, tx(h, 1), "modbus.address", "7");
        CU_ASSERT_EQUAL(ots_harness_memcap_refused(h), 2 * cost);
        CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
        /* Its response finds nothing to pair with. */
        send(h, RSP, 2, 1, PDU(0x03, 0x02, 0x00, 0x01));
        FIELD(h, tx(h, 2), "status", "\"no_request\"");
        ots_harness_end(h);
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
        CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
    }

    /* Room for two: the oldest goes, as when the table is full. */
    {
        g_autoptr(OtsHarness) h = harness();
        ots_harness_set_memcap(h, 2 * cost + cost / 2);
        send(h, REQ, 1, 1, PDU(0x03, 0x00, 0x01, 0x00, 0x01));
        send(h, REQ, 2, 1, PDU(0x03, 0x00, 0x02, 0x00, 0x01));
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 0);
        CU_ASSERT_EQUAL(ots_harness_memcap_refused(h), 0);
        send(h, REQ, 3, 1, PDU(0x03, 0x00, 0x03, 0x00, 0x01));
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
        FIELD(h, tx(h, 0), "status", "\"unanswered\"");
        FIELD(h, tx(h, 0), "modbus.transaction_id", "1");
        CU_ASSERT_EQUAL(ots_harness_memcap_refused(h), cost);
        CU_ASSERT_EQUAL(ots_harness_mem_used(h), 2 * cost);
        send(h, RSP, 3, 1, PDU(0x03, 0x02, 0x00, 0x03));
        send(h, RSP, 2, 1, PDU(0x03, 0x02, 0x00, 0x02));
        FIELD(h, tx(h, 1), "status", "\"ok\"");
        FIELD(h, tx(h, 1), "modbus.transaction_id", "3");
        FIELD(h, tx(h, 2), "status", "\"ok\"");
        FIELD(h, tx(h, 2), "modbus.transaction_id", "2");
        CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
        ots_harness_end(h);
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
        check_clean(h);
    }

    /* A request larger than what the oldest frees: both are reported. */
    {
        g_autoptr(OtsHarness) h = harness();
        ots_harness_set_memcap(h, cost + 8);
        guint8 big[6 + 200] = {0x10, 0x00, 0x00, 0x00, 100, 200};
        send(h, REQ, 1, 1, PDU(0x03, 0x00, 0x01, 0x00, 0x01));
        CU_ASSERT_EQUAL(ots_harness_mem_used(h), cost);
        send(h, REQ, 2, 1, big, sizeof(big));
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
        FIELD(h, tx(h, 0), "status", "\"unanswered\"");
        FIELD(h, tx(h, 0), "modbus.transaction_id", "1");
        FIELD(h, tx(h, 1), "status", "\"unanswered\"");
        FIELD(h, tx(h, 1), "modbus.transaction_id", "2");
        FIELD(h, tx(h, 1), "function", "16");
        FIELD(h, tx(h, 1), "modbus.quantity", "100");
        CU_ASSERT(ots_harness_memcap_refused(h) > 2 * cost);
        CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
        /* Small requests fit again. */
        send(h, REQ, 3, 1, PDU(0x03, 0x00, 0x01, 0x00, 0x01));
        CU_ASSERT_EQUAL(ots_harness_mem_used(h), cost);
        send(h, RSP, 3, 1, PDU(0x03, 0x02, 0x00, 0x01));
        FIELD(h, tx(h, 2), "status", "\"ok\"");
        CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
        ots_harness_end(h);
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
        check_clean(h);
    }
}

/* ---- robustness --------------------------------------------------------- */

/* Requests, responses and expiry under budgets from none to a few requests. */
static void
test_memcap_random(void)
{
    g_autoptr(GRand) rnd = g_rand_new_with_seed(0x6d656d63);
    for (guint round = 0; round < 100; round++) {
        g_autoptr(OtsHarness) h = harness();
        ots_harness_set_memcap(h, (gsize)g_rand_int_range(rnd, 1, 400));
        for (guint k = 0; k < 60; k++) {
            guint16 tid = (guint16)g_rand_int_range(rnd, 0, 8);
            guint16 qty = (guint16)g_rand_int_range(rnd, 1, 100);
            ots_harness_set_time(h, T0 + (gint64)k * 3 * G_USEC_PER_SEC);
            if (g_rand_boolean(rnd))
                send(h, REQ, tid, 1, PDU(0x03, 0x00, 0x01, qty >> 8, qty & 0xff));
            else
                send(h, RSP, tid, 1, PDU(0x03, 0x02, 0x00, 0x01));
        }
        ots_harness_end(h);
        CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
        CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
    }
}

static void
test_random_garbage(void)
{
    g_autoptr(GRand) rnd = g_rand_new_with_seed(0x6d6f6462);
    for (guint round = 0; round < 200; round++) {
        g_autoptr(OtsHarness) h = harness();
        for (guint k = 0; k < 40; k++) {
            guint8 buf[512];
            gsize n = (gsize)g_rand_int_range(rnd, 1, sizeof(buf));
            for (gsize j = 0; j < n; j++)
                buf[j] = (guint8)g_rand_int(rnd);
            /* Bias towards Modbus-looking headers so deep paths get exercised. */
            if (n >= 8 && g_rand_boolean(rnd)) {
                buf[2] = buf[3] = 0;
                buf[4] = 0;
                buf[5] = (guint8)MIN(n - 6, (gsize)g_rand_int_range(rnd, 0, 256));
                buf[7] = (guint8)g_rand_int_range(rnd, 0, 45) | (g_rand_boolean(rnd) ? 0x80 : 0);
            }
            OtsDirection dir = g_rand_boolean(rnd) ? REQ : RSP;
            ots_harness_set_time(h, T0 + (gint64)k * 2 * G_USEC_PER_SEC);
            ots_harness_feed(h, dir, buf, n);
            if (g_rand_int_range(rnd, 0, 10) == 0)
                ots_harness_gap(h, dir, (guint32)g_rand_int_range(rnd, 0, 100));
        }
        ots_harness_end(h);
        CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
    }
}

static CU_TestInfo modbus_tests[] = {
    {"descriptor", test_descriptor},
    {"probe", test_probe},
    {"read coils (1)", test_read_coils},
    {"read discrete inputs (2), truncated values", test_read_discrete_inputs},
    {"read registers (3, 4)", test_read_registers},
    {"read 125 registers, values truncated", test_read_registers_truncated},
    {"write single coil/register (5, 6)", test_write_single},
    {"write multiple coils/registers (15, 16)", test_write_multiple},
    {"mask write (22), read/write multiple (23)", test_mask_write_and_read_write},
    {"exception status, comm counters and log (7, 11, 12)", test_exception_status_and_counters},
    {"diagnostics sub-functions (8)", test_diagnostics},
    {"report server id (17) and asset", test_report_server_id},
    {"file records (20, 21)", test_file_records},
    {"FIFO queue (24)", test_fifo},
    {"device identification (43/14) and asset", test_device_identification},
    {"CANopen general reference (43/13)", test_canopen},
    {"exception codes", test_exceptions},
    {"user-defined and unknown codes", test_user_defined_and_unknown},
    {"several PDUs in one feed, out-of-order responses", test_several_pdus_one_feed},
    {"PDU split byte by byte", test_split_byte_by_byte},
    {"PDUs split across feeds", test_split_across_pdus},
    {"gap and resync", test_gap_resync},
    {"bad MBAP and PDU lengths", test_bad_length},
    {"protocol id != 0", test_bad_protocol_id},
    {"bad quantity, byte count, value", test_bad_quantity_and_byte_count},
    {"response echo and function mismatch", test_response_mismatch},
    {"response without request", test_response_without_request},
    {"unanswered at flow end", test_unanswered_at_end},
    {"unanswered after 30 s", test_unanswered_timeout},
    {"pending requests bounded", test_pending_overflow},
    {"reused transaction id", test_reused_transaction_id},
    {"memcap: charges refunded on pairing, expiry, eviction, end", test_memcap_balanced},
    {"memcap: requests past the budget reported at once", test_memcap_refused},
    {"memcap: random pairs under tiny budgets", test_memcap_random},
    {"random garbage never crashes", test_random_garbage},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES                                                                            \
    {                                                                                              \
        "modbus", NULL, NULL, NULL, NULL, modbus_tests                                             \
    }
#include "cunit-main.h"
