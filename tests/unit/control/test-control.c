/* SPDX-License-Identifier: Apache-2.0 */
/* core/control: request parsing (every refusal), the commands against a
 * fake daemon, and the server on a temporary socket: good, malformed,
 * oversized and unknown requests, many clients, idle timeout, and peer
 * credentials (a forked child that becomes nobody; needs root, as CI runs). */
#include "core/config/config.h"
#include "core/control/server.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <glib/gstdio.h>
#include <grp.h>
#include <otsensor/plugin.h>
#include <otsensor/transport.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- request parsing ---- */

static OtsControlRequest *
parse(const char *s, GError **error)
{
    return ots_control_request_parse(s, strlen(s), error);
}

static void
expect_error(const char *line, gsize len, int code, const char *fragment)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(OtsControlRequest) r = ots_control_request_parse(line, len, &err);
    CU_ASSERT_PTR_NULL(r);
    CU_ASSERT_TRUE(g_error_matches(err, OTS_CONTROL_ERROR, code));
    if (err && fragment && !strstr(err->message, fragment)) {
        fprintf(stderr, "\n  '%s' lacks '%s'\n", err->message, fragment);
        CU_FAIL("error message");
    }
}

static void
test_parse_good(void)
{
    const char *cmds[] = {"status",         "stats",          "version",
                          "transport.list", "transport.show", "reload"};
    for (guint i = 0; i < G_N_ELEMENTS(cmds); i++) {
        g_autofree char *line = g_strdup_printf("{\"v\":1,\"cmd\":\"%s\"}", cmds[i]);
        g_autoptr(GError) err = NULL;
        g_autoptr(OtsControlRequest) r = parse(line, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        CU_ASSERT_EQUAL(r->cmd, (OtsControlCmd)i);
        CU_ASSERT_STRING_EQUAL(ots_control_cmd_to_string(r->cmd), cmds[i]);
        CU_ASSERT_PTR_NULL(r->name);
    }
    g_autoptr(OtsControlRequest) r =
        parse(" {\"cmd\":\"transport.show\",\"v\":1,\"name\":\"proxy-chain\",\"x\":[1]} ", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->cmd, OTS_CONTROL_CMD_TRANSPORT_SHOW);
    CU_ASSERT_STRING_EQUAL(r->name, "proxy-chain");
    g_autoptr(OtsControlRequest) r2 = parse("{\"v\":1,\"cmd\":\"status\",\"name\":null}", NULL);
    CU_ASSERT_PTR_NOT_NULL(r2);
    CU_ASSERT_EQUAL(ots_control_cmd_from_string("nope"), -1);
}

static void
test_parse_switch(void)
{
    g_autoptr(OtsControlRequest) a =
        parse("{\"v\":1,\"cmd\":\"transport.set\",\"name\":\"proxy\",\"persist\":true}", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_EQUAL(a->cmd, OTS_CONTROL_CMD_TRANSPORT_SET);
    CU_ASSERT_STRING_EQUAL(a->name, "proxy");
    CU_ASSERT_TRUE(a->persist);
    g_autoptr(OtsControlRequest) b =
        parse("{\"v\":1,\"cmd\":\"transport.set\",\"clear\":true}", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_PTR_NULL(b->name);
    CU_ASSERT_TRUE(b->clear);
    CU_ASSERT_FALSE(b->persist);
    CU_ASSERT_FALSE(a->clear);
    g_autoptr(OtsControlRequest) c = parse("{\"v\":1,\"cmd\":\"transport.test\"}", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->cmd, OTS_CONTROL_CMD_TRANSPORT_TEST);
    CU_ASSERT_PTR_NULL(c->name);
    g_autoptr(OtsControlRequest) d =
        parse("{\"v\":1,\"cmd\":\"transport.test\",\"name\":\"proxy-chain\"}", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_STRING_EQUAL(d->name, "proxy-chain");
#define E(s, frag) expect_error(s, strlen(s), OTS_CONTROL_ERROR_MALFORMED, frag)
    E("{\"v\":1,\"cmd\":\"transport.set\"}", "either a transport");
    E("{\"v\":1,\"cmd\":\"transport.set\",\"name\":null}", "either a transport");
    E("{\"v\":1,\"cmd\":\"transport.set\",\"name\":\"a/b\"}", "transport name");
    E("{\"v\":1,\"cmd\":\"transport.set\",\"name\":[\"x\"]}", "transport name");
    E("{\"v\":1,\"cmd\":\"transport.set\",\"name\":\"x\",\"clear\":true}", "either");
    E("{\"v\":1,\"cmd\":\"transport.set\",\"clear\":false}", "either");
    E("{\"v\":1,\"cmd\":\"transport.set\",\"clear\":true,\"persist\":true}", "exclude");
    E("{\"v\":1,\"cmd\":\"transport.test\",\"clear\":true}", "boolean");
    E("{\"v\":1,\"cmd\":\"transport.set\",\"name\":\"x\",\"persist\":1}", "boolean");
    E("{\"v\":1,\"cmd\":\"transport.set\",\"name\":\"x\",\"persist\":{}}", "boolean");
    E("{\"v\":1,\"cmd\":\"status\",\"persist\":true}", "boolean");
#undef E
}

static void
test_parse_errors(void)
{
#define E(s, code, frag) expect_error(s, strlen(s), OTS_CONTROL_ERROR_##code, frag)
    E("", MALFORMED, "malformed");
    E("   ", MALFORMED, "malformed");
    E("{", MALFORMED, "malformed");
    E("{\"v\":1,\"cmd\":\"status\"", MALFORMED, "malformed");
    E("{\"v\":1,\"cmd\":\"status\"}}", MALFORMED, "malformed");
    E("[1,2]", MALFORMED, "not a JSON object");
    E("42", MALFORMED, "not a JSON object");
    E("\"status\"", MALFORMED, "not a JSON object");
    E("null", MALFORMED, NULL);
    E("{\"cmd\":\"status\"}", VERSION, "\"v\"");
    E("{\"v\":\"1\",\"cmd\":\"status\"}", VERSION, "\"v\"");
    E("{\"v\":1.0,\"cmd\":\"status\"}", VERSION, "\"v\"");
    E("{\"v\":null,\"cmd\":\"status\"}", VERSION, "\"v\"");
    E("{\"v\":2,\"cmd\":\"status\"}", VERSION, "unsupported protocol version 2");
    E("{\"v\":-9223372036854775808,\"cmd\":\"status\"}", VERSION, "unsupported");
    E("{\"v\":1}", MALFORMED, "\"cmd\"");
    E("{\"v\":1,\"cmd\":7}", MALFORMED, "\"cmd\"");
    E("{\"v\":1,\"cmd\":{}}", MALFORMED, "\"cmd\"");
    E("{\"v\":1,\"cmd\":\"stat\"}", UNKNOWN_CMD, "unknown command \"stat\"");
    E("{\"v\":1,\"cmd\":\"\"}", UNKNOWN_CMD, "unknown command");
    E("{\"v\":1,\"cmd\":\"transport set\"}", UNKNOWN_CMD, "unknown command");
    E("{\"v\":1,\"cmd\":\"status\",\"name\":\"x\"}", MALFORMED, "takes no \"name\"");
    E("{\"v\":1,\"cmd\":\"transport.show\",\"name\":3}", MALFORMED, "transport name");
    E("{\"v\":1,\"cmd\":\"transport.show\",\"name\":\"\"}", MALFORMED, "transport name");
    E("{\"v\":1,\"cmd\":\"transport.show\",\"name\":\"a/b\"}", MALFORMED, "transport name");
    E("{\"v\":1,\"cmd\":\"transport.show\",\"name\":\"../etc\"}", MALFORMED, "transport name");
#undef E
    /* A long unknown command is not echoed whole. */
    g_autofree char *longcmd = g_strnfill(1000, 'x');
    g_autofree char *l = g_strdup_printf("{\"v\":1,\"cmd\":\"%s\"}", longcmd);
    g_autoptr(GError) err = NULL;
    CU_ASSERT_PTR_NULL(parse(l, &err));
    CU_ASSERT_TRUE(err && strlen(err->message) < 80);
    g_autofree char *longname = g_strnfill(65, 'n');
    g_autofree char *l2 =
        g_strdup_printf("{\"v\":1,\"cmd\":\"transport.show\",\"name\":\"%s\"}", longname);
    expect_error(l2, strlen(l2), OTS_CONTROL_ERROR_MALFORMED, "transport name");
    /* NUL and invalid UTF-8 anywhere. */
    const char nul[] = "{\"v\":1,\"cmd\":\"status\"}\0junk";
    expect_error(nul, sizeof nul - 1, OTS_CONTROL_ERROR_MALFORMED, "UTF-8");
    const char bad[] = "{\"v\":1,\"cmd\":\"st\xff\xfe\"}";
    expect_error(bad, sizeof bad - 1, OTS_CONTROL_ERROR_MALFORMED, "UTF-8");
    /* Longer than the limit: refused before parsing. */
    gsize big = OTS_CONTROL_MAX_REQUEST + 1;
    char *huge = g_malloc(big);
    memset(huge, ' ', big);
    memcpy(huge, "{\"v\":1,\"cmd\":\"status\"}", 22);
    expect_error(huge, big, OTS_CONTROL_ERROR_TOO_LONG, "longer than");
    /* Exactly the limit is fine. */
    g_autoptr(OtsControlRequest) ok = ots_control_request_parse(huge, big - 1, NULL);
    CU_ASSERT_PTR_NOT_NULL(ok);
    g_free(huge);
    /* Deep nesting does not crash the parser. */
    GString *deep = g_string_new("{\"v\":1,\"cmd\":\"status\",\"x\":");
    for (int i = 0; i < 5000; i++)
        g_string_append_c(deep, '[');
    g_autoptr(GError) derr = NULL;
    CU_ASSERT_PTR_NULL(ots_control_request_parse(deep->str, deep->len, &derr));
    CU_ASSERT_PTR_NOT_NULL(derr);
    g_string_free(deep, TRUE);
}

static void
test_replies(void)
{
    JsonNode *n = json_node_new(JSON_NODE_OBJECT);
    JsonObject *o = json_object_new();
    json_object_set_int_member(o, "a", 1);
    json_node_take_object(n, o);
    g_autofree char *ok = ots_control_reply_ok(n);
    CU_ASSERT_STRING_EQUAL(ok, "{\"v\":1,\"ok\":true,\"result\":{\"a\":1}}\n");
    g_autofree char *okn = ots_control_reply_ok(NULL);
    CU_ASSERT_STRING_EQUAL(okn, "{\"v\":1,\"ok\":true,\"result\":null}\n");
    g_autofree char *e = ots_control_reply_error("bad \"x\"\n");
    CU_ASSERT_STRING_EQUAL(e, "{\"v\":1,\"ok\":false,\"error\":\"bad \\\"x\\\"\\n\"}\n");
    g_autofree char *inv = ots_control_reply_error("\xff");
    CU_ASSERT_TRUE(g_utf8_validate(inv, -1, NULL));
}

static void
test_peer_allowed(void)
{
    gid_t groups[] = {10, 20, 30};
    CU_ASSERT_TRUE(ots_control_peer_allowed(0, 0, NULL, 0, 999, (gid_t)-1));
    CU_ASSERT_TRUE(ots_control_peer_allowed(999, 5, NULL, 0, 999, (gid_t)-1));
    CU_ASSERT_FALSE(ots_control_peer_allowed(1000, 5, groups, 3, 999, (gid_t)-1));
    CU_ASSERT_FALSE(ots_control_peer_allowed(1000, 5, groups, 3, 999, 40));
    CU_ASSERT_TRUE(ots_control_peer_allowed(1000, 5, groups, 3, 999, 20));
    CU_ASSERT_TRUE(ots_control_peer_allowed(1000, 40, groups, 3, 999, 40));
    CU_ASSERT_FALSE(ots_control_peer_allowed(1000, 5, groups, 2, 999, 30));
    /* (gid_t)-1 in the peer's groups never matches "no group". */
    gid_t minus[] = {(gid_t)-1};
    CU_ASSERT_FALSE(ots_control_peer_allowed(1000, (gid_t)-1, minus, 1, 999, (gid_t)-1));
}

/* ---- the commands against a fake daemon ---- */

static const OtsSettingSpec fake_hop[] = {
    {.name = "host", .type = OTS_SETTING_STRING},
    {.name = "password", .type = OTS_SETTING_STRING}, /* not marked: the name hides it */
    {NULL},
};
static const OtsSettingSpec fake_settings[] = {
    {.name = "host", .type = OTS_SETTING_STRING},
    {.name = "port", .type = OTS_SETTING_INT},
    {.name = "tls", .type = OTS_SETTING_BOOL},
    {.name = "user", .type = OTS_SETTING_STRING},
    {.name = "password_file", .type = OTS_SETTING_STRING},
    {.name = "api_secret", .type = OTS_SETTING_STRING, .secret = TRUE},
    {.name = "hops", .type = OTS_SETTING_LIST, .children = fake_hop},
    {.name = "ports", .type = OTS_SETTING_INT_ARRAY},
    {.name = "headers", .type = OTS_SETTING_STRING_ARRAY},
    {NULL},
};

static OtsTransportInfo fake_transport = {
    .abi_major = OTS_ABI_MAJOR,
    .abi_minor = OTS_ABI_MINOR,
    .kind = OTS_PLUGIN_KIND_TRANSPORT,
    .name = "fake",
    .version = "9.9",
    .description = "a test transport",
    .settings = fake_settings,
};
static OtsTransportInfo raw_transport = {
    .abi_major = OTS_ABI_MAJOR,
    .abi_minor = OTS_ABI_MINOR,
    .kind = OTS_PLUGIN_KIND_TRANSPORT,
    .name = "local",
    .version = "1.0",
    .flags = OTS_TRANSPORT_FLAG_RAW,
};

typedef struct {
    OtsConfig *config;
    OtsPluginSet *plugins;
    guint64 events;
    gboolean reload_ok;
    guint reloads;
    guint status_calls;
} Fake;

static Fake fake;

static char *
fake_status(gpointer user)
{
    Fake *f = user;
    f->status_calls++;
    return g_strdup_printf(
        "{\"type\":\"sensor\",\"reason\":\"status\",\"version\":\"0.1.0\",\"uptime_s\":10,"
        "\"capture\":[{\"source\":\"eth0\",\"live\":true,\"packets\":7,\"kernel_dropped\":1}],"
        "\"events\":{\"transaction\":%" G_GUINT64_FORMAT ",\"flow\":0},"
        "\"spool\":{\"depth_events\":3,\"oldest_unacked\":\"2020-01-01T00:00:00.000000Z\"},"
        "\"uplink\":{\"transport\":\"fake\",\"state\":\"connected\",\"acked_seq\":5,"
        "\"last_error\":\"none\"}}",
        f->events);
}

/* A refused reload answers at once; a good one later, once "its switch"
 * is done (like the daemon's, which waits for the new path). */
typedef struct {
    OtsControlReplyFunc reply;
    gpointer data;
} FakeReload;

static gboolean
fake_reload_done(gpointer user)
{
    FakeReload *f = user;
    JsonNode *r = json_node_new(JSON_NODE_OBJECT);
    JsonObject *o = json_object_new();
    json_object_set_boolean_member(o, "reloaded", TRUE);
    JsonArray *keys = json_array_new();
    json_array_add_string_element(keys, "capture.interfaces");
    json_object_set_array_member(o, "restart_required", keys);
    JsonObject *sw = json_object_new();
    json_object_set_string_member(sw, "previous", "direct");
    json_object_set_string_member(sw, "transport", "proxy");
    json_object_set_object_member(o, "switch", sw);
    json_node_take_object(r, o);
    f->reply(r, NULL, f->data);
    g_free(f);
    return G_SOURCE_REMOVE;
}

static void
fake_reload(gpointer user, OtsControlReplyFunc reply, gpointer reply_data)
{
    Fake *f = user;
    f->reloads++;
    if (!f->reload_ok) {
        g_autoptr(GError) e = g_error_new_literal(
            OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_FAILED,
            "reload refused: otsensor.conf:12: flows.max_flows: 0 is out of range");
        reply(NULL, e, reply_data);
        return;
    }
    FakeReload *r = g_new0(FakeReload, 1);
    r->reply = reply;
    r->data = reply_data;
    g_timeout_add(50, fake_reload_done, r);
}

static const OtsSettings *
fake_settings_root(gpointer user)
{
    return ots_config_get_root(((Fake *)user)->config);
}

static const char *
fake_active(gpointer user)
{
    return "fake";
}

/* transport.set answers later (from an idle callback, like a real switch
 * that waits for the network); transport.test answers at once. */
typedef struct {
    OtsControlReplyFunc reply;
    gpointer data;
    char *name;
    gboolean persist;
} FakeSwitch;

static gboolean
fake_switch_done(gpointer user)
{
    FakeSwitch *f = user;
    if (g_strcmp0(f->name, "broken") == 0) {
        g_autoptr(GError) e = g_error_new(OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_FAILED,
                                          "cannot switch to transport broken: hop 0 (h:1): 407");
        f->reply(NULL, e, f->data);
    } else {
        JsonNode *r = json_node_new(JSON_NODE_OBJECT);
        JsonObject *o = json_object_new();
        json_object_set_string_member(o, "transport", f->name);
        json_object_set_boolean_member(o, "persisted", f->persist);
        json_node_take_object(r, o);
        f->reply(r, NULL, f->data);
    }
    g_free(f->name);
    g_free(f);
    return G_SOURCE_REMOVE;
}

static void
fake_transport_set(gpointer user, const char *name, gboolean persist, OtsControlReplyFunc reply,
                   gpointer reply_data)
{
    FakeSwitch *f = g_new0(FakeSwitch, 1);
    f->reply = reply;
    f->data = reply_data;
    f->name = g_strdup(name);
    f->persist = persist;
    g_timeout_add(50, fake_switch_done, f);
}

static void
fake_transport_test(gpointer user, const char *name, OtsControlReplyFunc reply, gpointer reply_data)
{
    JsonNode *r = json_node_new(JSON_NODE_OBJECT);
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "transport", name ? name : "fake");
    json_object_set_boolean_member(o, "ok", TRUE);
    json_node_take_object(r, o);
    reply(r, NULL, reply_data);
}

static OtsControlProvider fake_provider = {
    .transport_set = fake_transport_set,
    .transport_test = fake_transport_test,
    .status = fake_status,
    .reload = fake_reload,
    .settings = fake_settings_root,
    .active_transport = fake_active,
    .user = &fake,
};

static const char fake_conf[] =
    "sensor: { id = \"t\"; };\n"
    "output: { transport = \"fake\"; };\n"
    "transports: {\n"
    "  fake: { host = \"proxy.test\"; port = 3128; tls = true; user = \"alice\";\n"
    "          password_file = \"/etc/otsensor/SECRETPATH\"; api_secret = \"SECRETVALUE\";\n"
    "          hops = ( { host = \"h1\"; password = \"SECRETHOP\"; } ); ports = [ 1, 2 ];\n"
    "          headers = [ \"Proxy-Authorization: Basic SECRETHDR\", \"X\" ]; };\n"
    "  ghost: { x = 1; };\n"
    "};\n";

static int
setup_fake(void)
{
    g_autoptr(GError) err = NULL;
    fake.config = ots_config_load_string(fake_conf, "fake.conf", &err);
    if (!fake.config) {
        fprintf(stderr, "%s\n", err->message);
        return 1;
    }
    fake.plugins = ots_plugin_set_new();
    OtsPlugin *p = g_new0(OtsPlugin, 1);
    p->header = (const OtsPluginHeader *)&fake_transport;
    g_ptr_array_add(fake.plugins->plugins, p);
    OtsPlugin *q = g_new0(OtsPlugin, 1);
    q->header = (const OtsPluginHeader *)&raw_transport;
    g_ptr_array_add(fake.plugins->plugins, q);
    g_ptr_array_add(fake.plugins->refused, g_strdup("bad.so: built for ABI 0.1"));
    fake_provider.plugins = fake.plugins;
    fake.reload_ok = TRUE;
    return 0;
}

static int
teardown_fake(void)
{
    ots_config_free(fake.config);
    ots_plugin_set_free(fake.plugins);
    return 0;
}

static JsonNode *
run_cmd(const char *line, GError **error)
{
    g_autoptr(OtsControlRequest) r = parse(line, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    static OtsControlRate rate;
    return ots_control_dispatch(&fake_provider, &rate, r, error);
}

static char *
to_text(JsonNode *n)
{
    return json_to_string(n, FALSE);
}

static void
test_cmd_status_stats(void)
{
    fake.events = 100;
    g_autoptr(JsonNode) st = run_cmd("{\"v\":1,\"cmd\":\"status\"}", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    JsonObject *o = json_node_get_object(st);
    CU_ASSERT_FALSE(json_object_has_member(o, "type"));
    CU_ASSERT_FALSE(json_object_has_member(o, "reason"));
    CU_ASSERT_EQUAL(json_object_get_int_member(o, "events_total"), 100);
    /* First sample: the average since the start (100 events in 10 s). */
    CU_ASSERT_DOUBLE_EQUAL(json_object_get_double_member(o, "events_per_s"), 10.0, 0.001);
    JsonObject *spool = json_object_get_object_member(o, "spool");
    CU_ASSERT_TRUE(json_object_get_double_member(spool, "oldest_unacked_age_s") > 1e8);
    /* A second sample over >= 1 s: the rate between the two. */
    fake.events = 150;
    g_usleep(1100 * 1000);
    g_autoptr(JsonNode) st2 = run_cmd("{\"v\":1,\"cmd\":\"status\"}", NULL);
    double r = json_object_get_double_member(json_node_get_object(st2), "events_per_s");
    CU_ASSERT_TRUE(r > 30 && r <= 50);

    g_autoptr(JsonNode) stats = run_cmd("{\"v\":1,\"cmd\":\"stats\"}", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(stats);
    g_autofree char *t = to_text(stats);
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"packets\":7"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"source\":\"eth0\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"acked_seq\":5"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"events_total\":150"));
    CU_ASSERT_PTR_NULL(strstr(t, "connected"));
    CU_ASSERT_PTR_NULL(strstr(t, "\"version\""));
    CU_ASSERT_PTR_NULL(strstr(t, "live"));
}

static void
test_cmd_version_list(void)
{
    g_autoptr(JsonNode) v = run_cmd("{\"v\":1,\"cmd\":\"version\"}", NULL);
    g_autofree char *vt = to_text(v);
    CU_ASSERT_PTR_NOT_NULL(strstr(vt, "\"name\":\"fake\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(vt, "\"version\":\"9.9\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(vt, "bad.so: built for ABI 0.1"));
    g_autofree char *abi = g_strdup_printf("\"abi\":\"%d.%d\"", OTS_ABI_MAJOR, OTS_ABI_MINOR);
    CU_ASSERT_PTR_NOT_NULL(strstr(vt, abi));

    g_autoptr(JsonNode) l = run_cmd("{\"v\":1,\"cmd\":\"transport.list\"}", NULL);
    JsonObject *o = json_node_get_object(l);
    CU_ASSERT_STRING_EQUAL(json_object_get_string_member(o, "active"), "fake");
    JsonArray *ts = json_object_get_array_member(o, "transports");
    CU_ASSERT_EQUAL_FATAL(json_array_get_length(ts), 2);
    JsonObject *t0 = json_array_get_object_element(ts, 0);
    CU_ASSERT_TRUE(json_object_get_boolean_member(t0, "active"));
    CU_ASSERT_TRUE(json_object_get_boolean_member(t0, "configured"));
    JsonObject *t1 = json_array_get_object_element(ts, 1);
    CU_ASSERT_FALSE(json_object_get_boolean_member(t1, "active"));
    CU_ASSERT_TRUE(json_object_get_boolean_member(t1, "raw"));
    g_autofree char *lt = to_text(l);
    CU_ASSERT_PTR_NOT_NULL(strstr(lt, "\"configured\":[\"fake\",\"ghost\""));
}

static void
test_cmd_transport_show(void)
{
    g_autoptr(JsonNode) s = run_cmd("{\"v\":1,\"cmd\":\"transport.show\"}", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    g_autofree char *t = to_text(s);
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"name\":\"fake\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"host\":\"proxy.test\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"port\":3128"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"tls\":true"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"user\":\"alice\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"ports\":[1,2]"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"password_file\":\"(secret)\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"api_secret\":\"(secret)\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"password\":\"(secret)\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"host\":\"h1\""));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(t, "\"headers\":[\"Proxy-Authorization: (secret)\",\"(secret)\"]"));
    CU_ASSERT_PTR_NULL(strstr(t, "SECRET"));

    g_autoptr(JsonNode) l =
        run_cmd("{\"v\":1,\"cmd\":\"transport.show\",\"name\":\"local\"}", NULL);
    g_autofree char *lt = to_text(l);
    CU_ASSERT_PTR_NOT_NULL(strstr(lt, "\"configured\":false"));
    CU_ASSERT_PTR_NOT_NULL(strstr(lt, "\"settings\":{}"));

    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) none =
        run_cmd("{\"v\":1,\"cmd\":\"transport.show\",\"name\":\"ghost\"}", &err);
    CU_ASSERT_PTR_NULL(none);
    CU_ASSERT_TRUE(g_error_matches(err, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_NOT_FOUND));
}

static void
test_cmd_reload(void)
{
    /* Asynchronous (its answer waits for a switch): the server hands it to
     * the provider; the dispatcher alone does not run it. */
    guint before = fake.reloads;
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) none = run_cmd("{\"v\":1,\"cmd\":\"reload\"}", &err);
    CU_ASSERT_PTR_NULL(none);
    CU_ASSERT_TRUE(g_error_matches(err, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_FAILED));
    CU_ASSERT_EQUAL(fake.reloads, before);
}

/* ---- the server on a temporary socket ---- */

static char *tmpdir;
static char *sock_path;

static int
setup_dir(void)
{
    tmpdir = g_dir_make_tmp("ots-control-XXXXXX", NULL);
    if (!tmpdir)
        return 1;
    /* nobody must reach the socket to be refused by the credential check
     * rather than by the file mode. */
    g_chmod(tmpdir, 0755);
    sock_path = g_build_filename(tmpdir, "run", "control.sock", NULL);
    return setup_fake();
}

static int
teardown_dir(void)
{
    g_autofree char *run = g_build_filename(tmpdir, "run", NULL);
    g_rmdir(run);
    g_rmdir(tmpdir);
    g_free(tmpdir);
    g_free(sock_path);
    return teardown_fake();
}

static int
connect_to(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    g_strlcpy(sa.sun_path, path, sizeof sa.sun_path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* A client in a thread while the main thread serves. */
typedef struct {
    int fd;           /* -1: connect first */
    const char *data; /* sent first */
    gsize len;
    guint want_lines; /* read until this many lines, EOF or timeout */
    gboolean keep;    /* leave fd open */
    GString *reply;
    gboolean eof;
    gint done;
} Client;

static gpointer
client_thread(gpointer user)
{
    Client *c = user;
    if (c->fd < 0)
        c->fd = connect_to(sock_path);
    c->reply = g_string_new(NULL);
    if (c->fd >= 0) {
        gsize off = 0;
        while (off < c->len) {
            ssize_t n = send(c->fd, c->data + off, MIN(c->len - off, 65536), MSG_NOSIGNAL);
            if (n <= 0)
                break;
            off += (gsize)n;
        }
        guint lines = 0;
        char buf[4096];
        while (lines < c->want_lines) {
            ssize_t n = recv(c->fd, buf, sizeof buf, 0);
            if (n <= 0) {
                c->eof = n == 0;
                break;
            }
            g_string_append_len(c->reply, buf, n);
            for (ssize_t i = 0; i < n; i++)
                lines += buf[i] == '\n';
        }
        if (!c->keep) {
            close(c->fd);
            c->fd = -1;
        }
    }
    g_atomic_int_set(&c->done, 1);
    g_main_context_wakeup(NULL);
    return NULL;
}

static void
run_client(Client *c)
{
    GThread *t = g_thread_new("client", client_thread, c);
    while (!g_atomic_int_get(&c->done))
        g_main_context_iteration(NULL, TRUE);
    g_thread_join(t);
}

static char *
ask(const char *data, gsize len, guint lines, gboolean *eof)
{
    Client c = {.fd = -1, .data = data, .len = len, .want_lines = lines};
    run_client(&c);
    if (eof)
        *eof = c.eof;
    return g_string_free(c.reply, FALSE);
}

static OtsControlServer *
new_server(const char *group, guint max_clients, guint idle_ms)
{
    OtsControlServerConfig cfg = {
        .path = sock_path, .group = group, .max_clients = max_clients, .idle_timeout_ms = idle_ms};
    g_autoptr(GError) err = NULL;
    OtsControlServer *s = ots_control_server_new(&cfg, &fake_provider, &err);
    if (!s)
        fprintf(stderr, "\n  server: %s\n", err->message);
    return s;
}

static void
test_server_requests(void)
{
    OtsControlServer *s = new_server(NULL, 0, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    GStatBuf st;
    CU_ASSERT_EQUAL(g_stat(sock_path, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0600); /* no group configured */
    CU_ASSERT_TRUE(S_ISSOCK(st.st_mode));

    const char *req = "{\"v\":1,\"cmd\":\"version\"}\n";
    g_autofree char *r1 = ask(req, strlen(req), 1, NULL);
    CU_ASSERT_TRUE(g_str_has_prefix(r1, "{\"v\":1,\"ok\":true,\"result\":{\"version\":"));
    CU_ASSERT_TRUE(g_str_has_suffix(r1, "}\n"));

    /* Several requests in one write, CRLF, blank lines, errors between. */
    const char *many = "{\"v\":1,\"cmd\":\"status\"}\r\n\n"
                       "not json\n"
                       "{\"v\":1,\"cmd\":\"frobnicate\"}\n"
                       "{\"v\":3,\"cmd\":\"status\"}\n"
                       "{\"v\":1,\"cmd\":\"transport.show\",\"name\":\"nope\"}\n"
                       "{\"v\":1,\"cmd\":\"transport.list\"}\n";
    g_autofree char *r2 = ask(many, strlen(many), 6, NULL);
    g_auto(GStrv) lines = g_strsplit(r2, "\n", -1);
    CU_ASSERT_EQUAL_FATAL(g_strv_length(lines), 7);
    CU_ASSERT_TRUE(g_str_has_prefix(lines[0], "{\"v\":1,\"ok\":true,\"result\":{"));
    CU_ASSERT_PTR_NOT_NULL(strstr(lines[0], "\"events_per_s\""));
    CU_ASSERT_TRUE(g_str_has_prefix(lines[1], "{\"v\":1,\"ok\":false,\"error\":\"malformed"));
    CU_ASSERT_PTR_NOT_NULL(strstr(lines[2], "unknown command \\\"frobnicate\\\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(lines[3], "unsupported protocol version 3"));
    CU_ASSERT_PTR_NOT_NULL(strstr(lines[4], "no transport plugin named 'nope'"));
    CU_ASSERT_PTR_NOT_NULL(strstr(lines[5], "\"active\":\"fake\""));

    /* Asynchronous commands: transport.set answers later, and the lines
     * after it wait for its answer, in order; transport.test at once. */
    const char *sw = "{\"v\":1,\"cmd\":\"transport.set\",\"name\":\"proxy\",\"persist\":true}\n"
                     "{\"v\":1,\"cmd\":\"transport.list\"}\n"
                     "{\"v\":1,\"cmd\":\"transport.set\",\"name\":\"broken\"}\n"
                     "{\"v\":1,\"cmd\":\"transport.test\",\"name\":\"direct\"}\n";
    g_autofree char *r4 = ask(sw, strlen(sw), 4, NULL);
    g_auto(GStrv) sl = g_strsplit(r4, "\n", -1);
    CU_ASSERT_EQUAL_FATAL(g_strv_length(sl), 5);
    CU_ASSERT_PTR_NOT_NULL(strstr(sl[0], "\"ok\":true"));
    CU_ASSERT_PTR_NOT_NULL(strstr(sl[0], "\"transport\":\"proxy\",\"persisted\":true"));
    CU_ASSERT_PTR_NOT_NULL(strstr(sl[1], "\"active\":\"fake\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(sl[2], "\"ok\":false"));
    CU_ASSERT_PTR_NOT_NULL(strstr(sl[2], "hop 0 (h:1): 407"));
    CU_ASSERT_PTR_NOT_NULL(strstr(sl[3], "\"transport\":\"direct\",\"ok\":true"));
    /* A client gone before the answer: the answer is dropped, no crash. */
    Client gone = {.fd = -1, .data = sw, .len = strlen(sw), .want_lines = 0};
    run_client(&gone);
    g_string_free(gone.reply, TRUE);
    const char *rlg = "{\"v\":1,\"cmd\":\"reload\"}\n";
    Client gone2 = {.fd = -1, .data = rlg, .len = strlen(rlg), .want_lines = 0};
    run_client(&gone2);
    g_string_free(gone2.reply, TRUE);
    for (int i = 0; i < 20; i++) {
        g_usleep(10000);
        while (g_main_context_iteration(NULL, FALSE))
            ;
    }
    /* The dispatcher itself leaves them to the server. */
    g_autoptr(GError) aerr = NULL;
    g_autoptr(JsonNode) none = run_cmd("{\"v\":1,\"cmd\":\"transport.test\"}", &aerr);
    CU_ASSERT_PTR_NULL(none);
    CU_ASSERT_PTR_NOT_NULL(aerr);

    /* A failing reload answers with the file:line. */
    fake.reload_ok = FALSE;
    const char *rl = "{\"v\":1,\"cmd\":\"reload\"}\n";
    g_autofree char *r3 = ask(rl, strlen(rl), 1, NULL);
    fake.reload_ok = TRUE;
    CU_ASSERT_PTR_NOT_NULL(strstr(r3, "\"ok\":false"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r3, "reload refused: otsensor.conf:12: flows.max_flows"));
    /* A good one answers once its switch is done, with what it did; the
     * lines after it wait for that answer. */
    guint reloads = fake.reloads;
    const char *rl2 = "{\"v\":1,\"cmd\":\"reload\"}\n{\"v\":1,\"cmd\":\"transport.list\"}\n";
    g_autofree char *r5 = ask(rl2, strlen(rl2), 2, NULL);
    g_auto(GStrv) rls = g_strsplit(r5, "\n", -1);
    CU_ASSERT_EQUAL_FATAL(g_strv_length(rls), 3);
    CU_ASSERT_PTR_NOT_NULL(strstr(rls[0], "\"ok\":true"));
    CU_ASSERT_PTR_NOT_NULL(strstr(rls[0], "\"restart_required\":[\"capture.interfaces\"]"));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(rls[0], "\"switch\":{\"previous\":\"direct\",\"transport\":\"proxy\"}"));
    CU_ASSERT_PTR_NOT_NULL(strstr(rls[1], "\"active\":\"fake\""));
    CU_ASSERT_EQUAL(fake.reloads, reloads + 1);

    /* A request split across writes is reassembled. */
    Client c = {.fd = -1, .data = "{\"v\":1,\"cm", .len = 10, .want_lines = 0, .keep = TRUE};
    run_client(&c);
    Client c2 = {.fd = c.fd, .data = "d\":\"stats\"}\n", .len = 12, .want_lines = 1};
    g_string_free(c.reply, TRUE);
    run_client(&c2);
    CU_ASSERT_PTR_NOT_NULL(strstr(c2.reply->str, "\"ok\":true"));
    g_string_free(c2.reply, TRUE);

    /* Only our socket: a second server on the same path is refused. */
    g_autoptr(GError) err = NULL;
    OtsControlServerConfig cfg = {.path = sock_path};
    OtsControlServer *s2 = ots_control_server_new(&cfg, &fake_provider, &err);
    CU_ASSERT_PTR_NULL(s2);
    CU_ASSERT_TRUE(err && strstr(err->message, "another otsensord"));

    ots_control_server_free(s);
    CU_ASSERT_FALSE(g_file_test(sock_path, G_FILE_TEST_EXISTS));
}

static void
test_server_oversized(void)
{
    OtsControlServer *s = new_server(NULL, 0, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    gsize n = OTS_CONTROL_MAX_REQUEST + 4096;
    char *big = g_malloc(n);
    memset(big, 'a', n);
    gboolean eof = FALSE;
    g_autofree char *r = ask(big, n, 2, &eof);
    g_free(big);
    CU_ASSERT_PTR_NOT_NULL(strstr(r, "\"ok\":false"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r, "longer than 65536 bytes"));
    CU_ASSERT_TRUE(eof); /* and the connection is closed */
    CU_ASSERT_EQUAL(ots_control_server_n_clients(s), 0);
    /* The server still answers. */
    const char *req = "{\"v\":1,\"cmd\":\"version\"}\n";
    g_autofree char *r2 = ask(req, strlen(req), 1, NULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(r2, "\"ok\":true"));
    /* A stale socket file (no listener) is replaced. */
    ots_control_server_free(s);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    g_strlcpy(sa.sun_path, sock_path, sizeof sa.sun_path);
    CU_ASSERT_EQUAL(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
    s = new_server(NULL, 0, 0);
    CU_ASSERT_PTR_NOT_NULL(s);
    ots_control_server_free(s);
    /* A file that is no socket is left alone. */
    g_file_set_contents(sock_path, "x", 1, NULL);
    g_autoptr(GError) err = NULL;
    OtsControlServerConfig cfg = {.path = sock_path};
    CU_ASSERT_PTR_NULL(ots_control_server_new(&cfg, &fake_provider, &err));
    CU_ASSERT_TRUE(err && strstr(err->message, "not a socket"));
    g_unlink(sock_path);
    g_autoptr(GError) gerr = NULL;
    OtsControlServerConfig gcfg = {.path = sock_path, .group = "no-such-group-xyz"};
    CU_ASSERT_PTR_NULL(ots_control_server_new(&gcfg, &fake_provider, &gerr));
    CU_ASSERT_TRUE(gerr && strstr(gerr->message, "no group named"));
}

static void
test_server_clients(void)
{
    OtsControlServer *s = new_server(NULL, 4, 300);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    int fds[4];
    for (int i = 0; i < 4; i++) {
        fds[i] = connect_to(sock_path);
        CU_ASSERT_TRUE(fds[i] >= 0);
    }
    /* Let the server accept them. */
    for (int i = 0; i < 20 && ots_control_server_n_clients(s) < 4; i++)
        g_main_context_iteration(NULL, FALSE);
    CU_ASSERT_EQUAL(ots_control_server_n_clients(s), 4);
    /* The fifth is turned away. */
    const char *req = "{\"v\":1,\"cmd\":\"version\"}\n";
    gboolean eof = FALSE;
    g_autofree char *r = ask(req, strlen(req), 1, &eof);
    CU_ASSERT_PTR_NOT_NULL(strstr(r, "too many clients"));
    /* The four are all served, interleaved. */
    for (int i = 0; i < 4; i++) {
        Client c = {.fd = fds[i], .data = req, .len = strlen(req), .want_lines = 1, .keep = TRUE};
        run_client(&c);
        CU_ASSERT_PTR_NOT_NULL(strstr(c.reply->str, "\"ok\":true"));
        g_string_free(c.reply, TRUE);
    }
    /* Silent clients are closed after the idle timeout. */
    gint64 end = g_get_monotonic_time() + 3 * G_USEC_PER_SEC;
    while (ots_control_server_n_clients(s) > 0 && g_get_monotonic_time() < end)
        g_main_context_iteration(NULL, TRUE);
    CU_ASSERT_EQUAL(ots_control_server_n_clients(s), 0);
    char b;
    CU_ASSERT_EQUAL(recv(fds[0], &b, 1, 0), 0);
    for (int i = 0; i < 4; i++)
        close(fds[i]);
    /* A client that hangs up right after sending does not crash anything. */
    for (int i = 0; i < 8; i++) {
        int fd = connect_to(sock_path);
        send(fd, req, strlen(req), MSG_NOSIGNAL);
        close(fd);
    }
    end = g_get_monotonic_time() + G_USEC_PER_SEC;
    while (g_get_monotonic_time() < end)
        g_main_context_iteration(NULL, FALSE);
    CU_ASSERT_EQUAL(ots_control_server_n_clients(s), 0);
    ots_control_server_free(s);
}

/* A forked child becomes nobody (gid @gid) and asks for the version. Its
 * exit status: 0 ok reply, 1 "access denied", 2 anything else. */
static int
child_as_nobody(gid_t gid)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(65534) != 0)
            _exit(3);
        int fd = connect_to(sock_path);
        if (fd < 0)
            _exit(4);
        const char *req = "{\"v\":1,\"cmd\":\"version\"}\n";
        if (send(fd, req, strlen(req), MSG_NOSIGNAL) < 0)
            _exit(5);
        char buf[8192];
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        if (n <= 0)
            _exit(6);
        buf[n] = '\0';
        _exit(strstr(buf, "\"ok\":true") ? 0 : strstr(buf, "access denied") ? 1 : 2);
    }
    int status = -1;
    gint64 end = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (waitpid(pid, &status, WNOHANG) == 0 && g_get_monotonic_time() < end)
        g_main_context_iteration(NULL, FALSE), g_usleep(1000);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
test_server_peer_credentials(void)
{
    CU_ASSERT_EQUAL_FATAL(geteuid(), 0); /* CI runs the unit tests as root */
    struct group *gr = getgrgid(65534);
    CU_ASSERT_PTR_NOT_NULL_FATAL(gr);
    g_autofree char *gname = g_strdup(gr->gr_name);
    /* No group configured: nobody is refused by the credential check (the
     * mode is opened up so the kernel lets it connect at all). */
    OtsControlServer *s = new_server(NULL, 0, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    g_chmod(sock_path, 0666);
    CU_ASSERT_EQUAL(child_as_nobody(65534), 1);
    /* Root still is served. */
    const char *req = "{\"v\":1,\"cmd\":\"version\"}\n";
    g_autofree char *r = ask(req, strlen(req), 1, NULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(r, "\"ok\":true"));
    ots_control_server_free(s);

    /* The group configured: the socket belongs to it, and a member may use it
     * while a non-member (another gid) may not. */
    s = new_server(gname, 0, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    GStatBuf st;
    CU_ASSERT_EQUAL(g_stat(sock_path, &st), 0);
    CU_ASSERT_EQUAL(st.st_gid, 65534);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0660);
    CU_ASSERT_EQUAL(child_as_nobody(65534), 0);
    g_chmod(sock_path, 0666);
    CU_ASSERT_EQUAL(child_as_nobody(65533), 1);
    ots_control_server_free(s);
}

static CU_TestInfo parse_tests[] = {
    {"good requests", test_parse_good},
    {"every refusal", test_parse_errors},
    {"transport.set and transport.test", test_parse_switch},
    {"replies", test_replies},
    {"peer check", test_peer_allowed},
    CU_TEST_INFO_NULL,
};
static CU_TestInfo command_tests[] = {
    {"status and stats", test_cmd_status_stats},
    {"version and transport list", test_cmd_version_list},
    {"transport show hides secrets", test_cmd_transport_show},
    {"reload", test_cmd_reload},
    CU_TEST_INFO_NULL,
};
static CU_TestInfo server_tests[] = {
    {"requests", test_server_requests},
    {"oversized and stale", test_server_oversized},
    {"clients and idle", test_server_clients},
    {"peer credentials", test_server_peer_credentials},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES                                                                            \
    {"control-request", NULL, NULL, NULL, NULL, parse_tests},                                      \
        {"control-commands", setup_fake, teardown_fake, NULL, NULL, command_tests},                \
    {                                                                                              \
        "control-server", setup_dir, teardown_dir, NULL, NULL, server_tests                        \
    }
#include "cunit-main.h"
