/* SPDX-License-Identifier: Apache-2.0 */
/* otsensorctl: talks to a running otsensord over its control socket (one
 * JSON request line, one JSON reply line) and prints the answer as tables,
 * or as JSON for scripts. */
#include "ots-build-config.h"

#include <gio/gio.h>
#include <gio/gunixsocketaddress.h>
#include <grp.h>
#include <json-glib/json-glib.h>
#include <locale.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>

#define DEFAULT_SOCKET "/run/otsensor/control.sock"
/* A status with many capture sources is some KiB; more is not a reply. */
#define MAX_REPLY (16 * 1024 * 1024)
#define EXIT_FAILED 1

static const char *socket_path = DEFAULT_SOCKET;
static gboolean json_out;
static gboolean persist_opt;
static gboolean clear_opt;

/* The daemon opens the socket to its group (0660) only when control.group
 * is set; otherwise it is 0600. */
static char *
socket_group(char **owner)
{
    struct stat st;
    if (stat(socket_path, &st) != 0)
        return NULL;
    struct passwd *pw = getpwuid(st.st_uid);
    *owner = pw ? g_strdup(pw->pw_name) : g_strdup_printf("uid %u", (guint)st.st_uid);
    if (!(st.st_mode & S_IWGRP))
        return NULL;
    struct group *gr = getgrgid(st.st_gid);
    return gr ? g_strdup(gr->gr_name) : g_strdup_printf("%u", (guint)st.st_gid);
}

static int
access_denied(void)
{
    g_autofree char *owner = NULL;
    g_autofree char *group = socket_group(&owner);
    if (group)
        g_printerr("otsensorctl: access denied: run as root or a member of group %s\n", group);
    else
        g_printerr("otsensorctl: access denied: run as root or as %s (control.group is not "
                   "set)\n",
                   owner ? owner : "otsensord's user");
    return EX_NOPERM;
}

/* Sends @request, returns the reply object or NULL with *@code set. */
static JsonObject *
call(const char *request, int *code)
{
    g_autoptr(GSocketClient) client = g_socket_client_new();
    g_autoptr(GSocketAddress) addr = g_unix_socket_address_new(socket_path);
    g_socket_client_set_timeout(client, 60);
    g_autoptr(GError) err = NULL;
    g_autoptr(GSocketConnection) conn =
        g_socket_client_connect(client, G_SOCKET_CONNECTABLE(addr), NULL, &err);
    if (!conn) {
        if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED)) {
            *code = access_denied();
        } else if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND)) {
            g_printerr("otsensorctl: otsensord is not running (no socket at %s)\n", socket_path);
            *code = EX_UNAVAILABLE;
        } else if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED)) {
            g_printerr("otsensorctl: otsensord is not running (nothing listens on %s)\n",
                       socket_path);
            *code = EX_UNAVAILABLE;
        } else {
            g_printerr("otsensorctl: cannot connect to otsensord at %s: %s\n", socket_path,
                       err->message);
            *code = EX_UNAVAILABLE;
        }
        return NULL;
    }
    GOutputStream *out = g_io_stream_get_output_stream(G_IO_STREAM(conn));
    g_autofree char *line = g_strconcat(request, "\n", NULL);
    /* A daemon that refuses us answers and hangs up at once, maybe before
     * the request is written: its reply is still there to read. */
    g_autoptr(GError) werr = NULL;
    g_output_stream_write_all(out, line, strlen(line), NULL, NULL, &werr);
    g_autoptr(GDataInputStream) in =
        g_data_input_stream_new(g_io_stream_get_input_stream(G_IO_STREAM(conn)));
    g_buffered_input_stream_set_buffer_size(G_BUFFERED_INPUT_STREAM(in), 65536);
    gsize len = 0;
    g_autofree char *reply = g_data_input_stream_read_line(in, &len, NULL, &err);
    if (!reply || len > MAX_REPLY) {
        if (werr && !err)
            err = g_steal_pointer(&werr);
        g_printerr("otsensorctl: no reply from otsensord%s%s\n", err ? ": " : "",
                   err ? err->message : "");
        *code = EX_UNAVAILABLE;
        return NULL;
    }
    g_autoptr(JsonParser) parser = json_parser_new();
    if (!json_parser_load_from_data(parser, reply, (gssize)len, NULL) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        g_printerr("otsensorctl: otsensord sent a malformed reply\n");
        *code = EX_PROTOCOL;
        return NULL;
    }
    JsonObject *o = json_node_dup_object(json_parser_get_root(parser));
    if (!json_object_get_boolean_member_with_default(o, "ok", FALSE)) {
        const char *msg = json_object_get_string_member_with_default(o, "error", "failed");
        if (g_strcmp0(msg, "access denied") == 0) {
            *code = access_denied();
        } else {
            g_printerr("otsensorctl: %s\n", msg);
            *code = EXIT_FAILED;
        }
        json_object_unref(o);
        return NULL;
    }
    *code = 0;
    return o;
}

static void
print_json(JsonNode *n)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();
    json_generator_set_pretty(gen, TRUE);
    json_generator_set_root(gen, n);
    g_autofree char *text = json_generator_to_data(gen, NULL);
    g_print("%s\n", text);
}

static char *
scalar(JsonNode *n)
{
    if (!n || JSON_NODE_HOLDS_NULL(n))
        return g_strdup("-");
    if (!JSON_NODE_HOLDS_VALUE(n)) {
        g_autoptr(JsonGenerator) gen = json_generator_new();
        json_generator_set_root(gen, n);
        return json_generator_to_data(gen, NULL);
    }
    switch (json_node_get_value_type(n)) {
    case G_TYPE_INT64:
        return g_strdup_printf("%" G_GINT64_FORMAT, json_node_get_int(n));
    case G_TYPE_DOUBLE:
        return g_strdup_printf("%.1f", json_node_get_double(n));
    case G_TYPE_BOOLEAN:
        return g_strdup(json_node_get_boolean(n) ? "yes" : "no");
    default:
        return g_strdup(json_node_get_string(n));
    }
}

static char *
member(JsonObject *o, const char *key)
{
    return scalar(o && json_object_has_member(o, key) ? json_object_get_member(o, key) : NULL);
}

static JsonObject *
object_member(JsonObject *o, const char *key)
{
    JsonNode *n = o ? json_object_get_member(o, key) : NULL;
    return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

/* key = value lines for everything under @n, prefixed by its path. */
static void
print_flat(const char *prefix, JsonNode *n, int indent)
{
    if (JSON_NODE_HOLDS_OBJECT(n)) {
        JsonObject *o = json_node_get_object(n);
        g_autoptr(GList) members = json_object_get_members(o);
        for (GList *l = members; l; l = l->next) {
            g_autofree char *p =
                *prefix ? g_strdup_printf("%s.%s", prefix, (char *)l->data) : g_strdup(l->data);
            print_flat(p, json_object_get_member(o, l->data), indent);
        }
        return;
    }
    if (JSON_NODE_HOLDS_ARRAY(n)) {
        JsonArray *a = json_node_get_array(n);
        gboolean scalars = TRUE;
        for (guint i = 0; i < json_array_get_length(a); i++)
            scalars = scalars && JSON_NODE_HOLDS_VALUE(json_array_get_element(a, i));
        if (scalars) {
            g_autofree char *v = scalar(n);
            g_print("%*s%-40s %s\n", indent, "", prefix, v);
            return;
        }
        for (guint i = 0; i < json_array_get_length(a); i++) {
            g_autofree char *p = g_strdup_printf("%s[%u]", prefix, i);
            print_flat(p, json_array_get_element(a, i), indent);
        }
        return;
    }
    g_autofree char *v = scalar(n);
    g_print("%*s%-40s %s\n", indent, "", prefix, v);
}

static void
show_status(JsonObject *r)
{
    g_autofree char *version = member(r, "version"), *up = member(r, "uptime_s");
    g_autofree char *site = member(r, "site");
    g_print("otsensord %s, up %s s%s%s\n\n", version, up,
            json_object_has_member(r, "site") ? ", site " : "",
            json_object_has_member(r, "site") ? site : "");
    g_print("%-24s %5s %6s %12s %12s %10s %10s %10s\n", "CAPTURE", "LIVE", "SHARDS", "PACKETS",
            "BYTES", "K-DROPPED", "Q-DROPPED", "FLOWS");
    JsonNode *cap = json_object_get_member(r, "capture");
    JsonArray *a = cap && JSON_NODE_HOLDS_ARRAY(cap) ? json_node_get_array(cap) : NULL;
    for (guint i = 0; a && i < json_array_get_length(a); i++) {
        JsonNode *en = json_array_get_element(a, i);
        JsonObject *c = JSON_NODE_HOLDS_OBJECT(en) ? json_node_get_object(en) : NULL;
        g_autofree char *src = member(c, "source"), *live = member(c, "live");
        g_autofree char *sh = member(c, "shards");
        g_autofree char *pk = member(c, "packets"), *by = member(c, "bytes");
        g_autofree char *kd = member(c, "kernel_dropped"), *qd = member(c, "queue_dropped_events");
        g_autofree char *fl = member(c, "flows_active");
        g_print("%-24s %5s %6s %12s %12s %10s %10s %10s\n", src, live, sh, pk, by, kd, qd, fl);
    }
    g_autofree char *total = member(r, "events_total"), *rate = member(r, "events_per_s");
    g_print("\nevents: %s total, %s/s", total, rate);
    JsonObject *ev = object_member(r, "events");
    if (ev) {
        g_autoptr(GList) members = json_object_get_members(ev);
        const char *sep = " (";
        for (GList *l = members; l; l = l->next) {
            g_autofree char *v = member(ev, l->data);
            g_print("%s%s %s", sep, (char *)l->data, v);
            sep = ", ";
        }
        if (members)
            g_print(")");
    }
    g_print("\n");
    JsonObject *sp = object_member(r, "spool");
    if (sp) {
        g_autofree char *de = member(sp, "depth_events"), *db = member(sp, "depth_bytes");
        g_print("spool: %s events (%s bytes) unsent", de, db);
        if (json_object_has_member(sp, "oldest_unacked_age_s")) {
            g_autofree char *age = member(sp, "oldest_unacked_age_s");
            g_print(", oldest %s s old", age);
        }
        g_print("\n");
    }
    JsonObject *up_o = object_member(r, "uplink");
    if (up_o) {
        g_autofree char *tr = member(up_o, "transport"), *state = member(up_o, "state");
        g_print("uplink: transport %s, %s", tr, state);
        if (json_object_has_member(up_o, "acked_seq")) {
            g_autofree char *acked = member(up_o, "acked_seq");
            g_print(", acked seq %s", acked);
        }
        if (json_object_has_member(up_o, "last_error")) {
            g_autofree char *le = member(up_o, "last_error");
            g_print(", last error: %s", le);
        }
        g_print("\n");
        JsonNode *ts = json_object_get_member(up_o, "transport_status");
        if (ts) {
            g_print("transport status:\n");
            print_flat("", ts, 2);
        }
    }
}

static void
show_version(JsonObject *r)
{
    g_autofree char *v = member(r, "version"), *abi = member(r, "abi");
    g_print("otsensord %s (SDK ABI %s)\n", v, abi);
    JsonNode *pn = json_object_get_member(r, "plugins");
    JsonArray *a = pn && JSON_NODE_HOLDS_ARRAY(pn) ? json_node_get_array(pn) : NULL;
    for (guint i = 0; a && i < json_array_get_length(a); i++) {
        JsonNode *en = json_array_get_element(a, i);
        JsonObject *p = JSON_NODE_HOLDS_OBJECT(en) ? json_node_get_object(en) : NULL;
        g_autofree char *k = member(p, "kind"), *n = member(p, "name"), *pv = member(p, "version");
        g_autofree char *pa = member(p, "abi"), *path = member(p, "path");
        g_print("  %-10s %-12s %-8s ABI %-5s %s\n", k, n, pv, pa, path);
    }
    JsonNode *rn = json_object_get_member(r, "refused");
    a = rn && JSON_NODE_HOLDS_ARRAY(rn) ? json_node_get_array(rn) : NULL;
    for (guint i = 0; a && i < json_array_get_length(a); i++)
        g_print("  refused    %s\n", json_array_get_string_element(a, i));
}

static void
show_transport_list(JsonObject *r)
{
    g_print("%-2s %-14s %-10s %-9s %s\n", "", "TRANSPORT", "CONFIGURED", "VERSION", "DESCRIPTION");
    JsonNode *tn = json_object_get_member(r, "transports");
    JsonArray *a = tn && JSON_NODE_HOLDS_ARRAY(tn) ? json_node_get_array(tn) : NULL;
    for (guint i = 0; a && i < json_array_get_length(a); i++) {
        JsonNode *en = json_array_get_element(a, i);
        JsonObject *t = JSON_NODE_HOLDS_OBJECT(en) ? json_node_get_object(en) : NULL;
        g_autofree char *n = member(t, "name"), *c = member(t, "configured");
        g_autofree char *v = member(t, "version"), *d = member(t, "description");
        gboolean active = t && json_object_get_boolean_member_with_default(t, "active", FALSE);
        g_print("%-2s %-14s %-10s %-9s %s\n", active ? "*" : "", n, c, v, d);
    }
    g_autofree char *act = member(r, "active");
    g_print("\nactive: %s\n", act);
}

static void
show_transport(JsonObject *r)
{
    g_autofree char *n = member(r, "name"), *a = member(r, "active"), *c = member(r, "configured");
    g_print("transport %s (active: %s, configured: %s)\n", n, a, c);
    JsonNode *s = json_object_get_member(r, "settings");
    if (s)
        print_flat("", s, 2);
}

/* The hops walked by transport.test and transport.set. */
static void
show_steps(JsonObject *r)
{
    JsonNode *sn = json_object_get_member(r, "steps");
    JsonArray *a = sn && JSON_NODE_HOLDS_ARRAY(sn) ? json_node_get_array(sn) : NULL;
    g_print("  %-4s %-28s %-14s %10s  %s\n", "HOP", "NAME", "STEP", "ELAPSED", "DETAIL");
    for (guint i = 0; a && i < json_array_get_length(a); i++) {
        JsonNode *en = json_array_get_element(a, i);
        JsonObject *st = JSON_NODE_HOLDS_OBJECT(en) ? json_node_get_object(en) : NULL;
        g_autofree char *hop = member(st, "hop"), *name = member(st, "name");
        g_autofree char *step = member(st, "step"), *detail = member(st, "detail");
        double ms = st ? json_object_get_double_member_with_default(st, "elapsed_ms", 0) : 0;
        g_print("  %-4s %-28s %-14s %7.1f ms  %s\n", hop, name, step, ms,
                st && json_object_has_member(st, "detail") ? detail : "");
    }
}

/* Returns the exit status: 1 when a hop failed. */
static int
show_test(JsonObject *r)
{
    g_autofree char *t = member(r, "transport"), *ep = member(r, "endpoint");
    gboolean ok = json_object_get_boolean_member_with_default(r, "ok", FALSE);
    double ms = json_object_get_double_member_with_default(r, "elapsed_ms", 0);
    g_print("test-connection: transport %s to %s\n", t, ep);
    show_steps(r);
    if (ok) {
        g_autofree char *tls = member(r, "tls");
        g_print("OK in %.1f ms%s%s\n", ms, json_object_has_member(r, "tls") ? ", " : "",
                json_object_has_member(r, "tls") ? tls : "");
        return 0;
    }
    g_autofree char *hop = member(r, "failed_hop"), *err = member(r, "error");
    g_print("FAILED at %s: %s\n", hop, err);
    return EXIT_FAILED;
}

/* Returns the exit status: 1 when --persist could not be written. */
static int
show_switch(JsonObject *r)
{
    if (json_object_has_member(r, "cleared")) {
        g_autofree char *t = member(r, "transport");
        g_print("persisted transport choice removed: output.transport from the configuration "
                "applies at the next start (running now: %s)\n",
                t);
        return 0;
    }
    g_autofree char *t = member(r, "transport"), *prev = member(r, "previous");
    double ms = json_object_get_double_member_with_default(r, "elapsed_ms", 0);
    double proven = json_object_get_double_member_with_default(r, "proven_ms", 0);
    show_steps(r);
    g_print("switched from %s to %s in %.1f ms (new path proven after %.1f ms)%s\n", prev, t, ms,
            proven,
            json_object_get_boolean_member_with_default(r, "persisted", FALSE)
                ? "; persisted across restarts"
                : "");
    if (json_object_has_member(r, "persist_error")) {
        g_autofree char *pe = member(r, "persist_error");
        g_printerr("otsensorctl: switched, but the choice is not persisted: %s\n", pe);
        return EXIT_FAILED;
    }
    return 0;
}

/* One line of what the reload did (a switch it set off included), and the
 * settings that wait for a restart. */
static void
show_reload(JsonObject *r)
{
    JsonObject *sw = object_member(r, "switch");
    if (sw) {
        g_autofree char *t = member(sw, "transport"), *prev = member(sw, "previous");
        double ms = json_object_get_double_member_with_default(sw, "elapsed_ms", 0);
        if (g_strcmp0(t, prev) == 0)
            g_print("configuration reloaded; transport %s reopened with its new settings in "
                    "%.0f ms\n",
                    t, ms);
        else
            g_print("configuration reloaded; transport switched from %s to %s in %.0f ms\n", prev,
                    t, ms);
    } else {
        g_print("configuration reloaded\n");
    }
    JsonNode *rn = json_object_get_member(r, "restart_required");
    JsonArray *a = rn && JSON_NODE_HOLDS_ARRAY(rn) ? json_node_get_array(rn) : NULL;
    if (!a || json_array_get_length(a) == 0)
        return;
    g_autoptr(GString) keys = g_string_new(NULL);
    for (guint i = 0; i < json_array_get_length(a); i++) {
        g_autofree char *k = scalar(json_array_get_element(a, i));
        g_string_append_printf(keys, "%s%s", i ? ", " : "", k);
    }
    g_print("needs a restart to take effect (the running values stay in force): %s\n", keys->str);
}

static int
usage(GOptionContext *ctx)
{
    g_autofree char *help = g_option_context_get_help(ctx, TRUE, NULL);
    g_printerr("%s", help);
    return EX_USAGE;
}

int
main(int argc, char **argv)
{
    setlocale(LC_ALL, "");
    setlocale(LC_NUMERIC, "C");
    g_autofree char *sock = NULL;
    GOptionEntry entries[] = {
        {"socket", 's', 0, G_OPTION_ARG_FILENAME, &sock,
         "Control socket of otsensord (default " DEFAULT_SOCKET ")", "SOCKET"},
        {"json", 0, 0, G_OPTION_ARG_NONE, &json_out, "Print the daemon's JSON answer", NULL},
        {"persist", 0, 0, G_OPTION_ARG_NONE, &persist_opt,
         "transport set: keep the choice across restarts", NULL},
        {"clear", 0, 0, G_OPTION_ARG_NONE, &clear_opt, "transport set: remove the persisted choice",
         NULL},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("COMMAND [ARG]");
    g_option_context_set_summary(ctx, "Controls a running otsensord.");
    g_option_context_set_description(
        ctx, "Commands:\n"
             "  status                 capture, flows, events/s, spool, uplink\n"
             "  stats                  the counters only\n"
             "  version                daemon version, SDK ABI, plugins\n"
             "  transport list         transport plugins, the active one\n"
             "  transport show [NAME]  a transport's settings (no secrets)\n"
             "  transport set NAME [--persist]\n"
             "                         switch the uplink to NAME once its path is proven\n"
             "  transport set --clear  forget a persisted choice (the file applies again)\n"
             "  test-connection [NAME] walk every hop of a transport (default: the active)\n"
             "  reload                 re-read the configuration file and apply it; answers\n"
             "                         once a transport switch it sets off is done, and names\n"
             "                         the settings that need a restart\n"
             "\n"
             "Exit status: 0 ok, 1 the daemon refused or failed, 64 usage,\n"
             "69 otsensord not running, 77 access denied.\n");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) err = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        g_printerr("otsensorctl: %s\n", err->message);
        return EX_USAGE;
    }
    if (sock)
        socket_path = sock;
    if (argc < 2)
        return usage(ctx);
    const char *cmd = argv[1];
    const char *wire = NULL, *name = NULL;
    int want_args = 2;
    if (g_str_equal(cmd, "status") || g_str_equal(cmd, "stats") || g_str_equal(cmd, "version") ||
        g_str_equal(cmd, "reload")) {
        wire = cmd;
    } else if (g_str_equal(cmd, "transport") && argc >= 3 && g_str_equal(argv[2], "list")) {
        wire = "transport.list";
        want_args = 3;
    } else if (g_str_equal(cmd, "transport") && argc >= 3 && g_str_equal(argv[2], "show")) {
        wire = "transport.show";
        want_args = 3;
        if (argc == 4) {
            name = argv[3];
            want_args = 4;
        }
    } else if (g_str_equal(cmd, "transport") && argc >= 3 && g_str_equal(argv[2], "set")) {
        wire = "transport.set";
        want_args = clear_opt ? 3 : 4;
        if (clear_opt && persist_opt) {
            g_printerr("otsensorctl: --clear and --persist exclude each other\n");
            return EX_USAGE;
        }
        if (argc == 4 && !clear_opt)
            name = argv[3];
        else if (argc < 4 && !clear_opt) {
            g_printerr("otsensorctl: transport set needs a transport name (or --clear)\n");
            return EX_USAGE;
        }
    } else if (g_str_equal(cmd, "test-connection")) {
        wire = "transport.test";
        if (argc == 3) {
            name = argv[2];
            want_args = 3;
        }
    } else {
        g_printerr("otsensorctl: unknown command '%s'\n", cmd);
        return usage(ctx);
    }
    if (argc != want_args) {
        g_printerr("otsensorctl: too many arguments for '%s'\n", cmd);
        return EX_USAGE;
    }

    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "v");
    json_builder_add_int_value(b, 1);
    json_builder_set_member_name(b, "cmd");
    json_builder_add_string_value(b, wire);
    if (name) {
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, name);
    }
    if ((persist_opt || clear_opt) && g_str_equal(wire, "transport.set")) {
        json_builder_set_member_name(b, persist_opt ? "persist" : "clear");
        json_builder_add_boolean_value(b, TRUE);
    }
    json_builder_end_object(b);
    g_autoptr(JsonNode) req = json_builder_get_root(b);
    g_autofree char *request = json_to_string(req, FALSE);

    if ((persist_opt || clear_opt) && !g_str_equal(wire, "transport.set")) {
        g_printerr("otsensorctl: --persist and --clear go with transport set\n");
        return EX_USAGE;
    }
    int code = 0;
    JsonObject *reply = call(request, &code);
    if (!reply)
        return code;
    JsonNode *result = json_object_get_member(reply, "result");
    JsonObject *r = result && JSON_NODE_HOLDS_OBJECT(result) ? json_node_get_object(result) : NULL;
    int rc = 0;
    if (g_str_equal(wire, "transport.test") && r &&
        !json_object_get_boolean_member_with_default(r, "ok", FALSE))
        rc = EXIT_FAILED;
    if (json_out) {
        if (result)
            print_json(result);
    } else if (g_str_equal(wire, "transport.test") && r) {
        rc = show_test(r);
    } else if (g_str_equal(wire, "transport.set") && r) {
        rc = show_switch(r);
    } else if (g_str_equal(wire, "status") && r) {
        show_status(r);
    } else if (g_str_equal(wire, "stats") && result) {
        print_flat("", result, 0);
    } else if (g_str_equal(wire, "version") && r) {
        show_version(r);
    } else if (g_str_equal(wire, "transport.list") && r) {
        show_transport_list(r);
    } else if (g_str_equal(wire, "transport.show") && r) {
        show_transport(r);
    } else if (g_str_equal(wire, "reload") && r) {
        show_reload(r);
    }
    json_object_unref(reply);
    return rc;
}
