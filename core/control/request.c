/* SPDX-License-Identifier: Apache-2.0 */
/* Control protocol requests and replies: strict parsing of untrusted lines. */
#include "core/control/request.h"

#include <string.h>

G_DEFINE_QUARK(ots - control - error - quark, ots_control_error)

static const char *const cmd_names[] = {
    [OTS_CONTROL_CMD_STATUS] = "status",
    [OTS_CONTROL_CMD_STATS] = "stats",
    [OTS_CONTROL_CMD_VERSION] = "version",
    [OTS_CONTROL_CMD_TRANSPORT_LIST] = "transport.list",
    [OTS_CONTROL_CMD_TRANSPORT_SHOW] = "transport.show",
    [OTS_CONTROL_CMD_RELOAD] = "reload",
    [OTS_CONTROL_CMD_TRANSPORT_SET] = "transport.set",
    [OTS_CONTROL_CMD_TRANSPORT_TEST] = "transport.test",
};

/**
 * ots_control_cmd_to_string:
 * @cmd: a command
 *
 * Returns: (transfer none): its name on the wire.
 */
const char *
ots_control_cmd_to_string(OtsControlCmd cmd)
{
    if ((guint)cmd >= G_N_ELEMENTS(cmd_names))
        return "?";
    return cmd_names[cmd];
}

/**
 * ots_control_cmd_from_string:
 * @name: a wire name
 *
 * Returns: the OtsControlCmd, or -1 when @name names none.
 */
int
ots_control_cmd_from_string(const char *name)
{
    for (guint i = 0; i < G_N_ELEMENTS(cmd_names); i++)
        if (g_strcmp0(name, cmd_names[i]) == 0)
            return (int)i;
    return -1;
}

/**
 * ots_control_request_free:
 * @req: (nullable): a request
 */
void
ots_control_request_free(OtsControlRequest *req)
{
    if (!req)
        return;
    g_free(req->name);
    g_free(req);
}

/* A transport name as the config allows keys: short, printable, no quotes. */
static gboolean
valid_name(const char *s)
{
    gsize n = strlen(s);
    if (n == 0 || n > 64)
        return FALSE;
    for (const char *p = s; *p; p++)
        if (!g_ascii_isalnum(*p) && *p != '_' && *p != '-' && *p != '.')
            return FALSE;
    return TRUE;
}

/**
 * ots_control_request_parse:
 * @data: one request line, without the newline
 * @len: its length in bytes
 * @error: the reason when the line is no valid request
 *
 * Returns: (transfer full) (nullable): the request.
 */
OtsControlRequest *
ots_control_request_parse(const char *data, gsize len, GError **error)
{
    if (len > OTS_CONTROL_MAX_REQUEST) {
        g_set_error(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_TOO_LONG,
                    "request longer than %d bytes", OTS_CONTROL_MAX_REQUEST);
        return NULL;
    }
    /* json-glib stops at a NUL and accepts invalid UTF-8 in places: refuse
     * both up front so what is parsed is what was sent. */
    if (memchr(data, '\0', len) || !g_utf8_validate(data, (gssize)len, NULL)) {
        g_set_error_literal(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_MALFORMED,
                            "malformed request: not UTF-8 text");
        return NULL;
    }
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) perr = NULL;
    if (!json_parser_load_from_data(parser, data, (gssize)len, &perr)) {
        g_set_error(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_MALFORMED, "malformed request: %s",
                    perr->message);
        return NULL;
    }
    JsonNode *root = json_parser_get_root(parser);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        g_set_error_literal(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_MALFORMED,
                            "malformed request: not a JSON object");
        return NULL;
    }
    JsonObject *o = json_node_get_object(root);
    JsonNode *v = json_object_get_member(o, "v");
    if (!v || json_node_get_value_type(v) != G_TYPE_INT64) {
        g_set_error_literal(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_VERSION,
                            "request without an integer protocol version \"v\"");
        return NULL;
    }
    if (json_node_get_int(v) != OTS_CONTROL_PROTOCOL_VERSION) {
        g_set_error(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_VERSION,
                    "unsupported protocol version %" G_GINT64_FORMAT " (this daemon speaks %d)",
                    json_node_get_int(v), OTS_CONTROL_PROTOCOL_VERSION);
        return NULL;
    }
    JsonNode *c = json_object_get_member(o, "cmd");
    if (!c || json_node_get_value_type(c) != G_TYPE_STRING) {
        g_set_error_literal(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_MALFORMED,
                            "request without a string \"cmd\"");
        return NULL;
    }
    const char *cmd_name = json_node_get_string(c);
    int cmd = ots_control_cmd_from_string(cmd_name);
    if (cmd < 0) {
        /* Never echo more than a short, escaped prefix of what was sent. */
        g_autofree char *shown = g_strescape(cmd_name, NULL);
        if (strlen(shown) > 40)
            shown[40] = '\0';
        g_set_error(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_UNKNOWN_CMD,
                    "unknown command \"%s\"", shown);
        return NULL;
    }
    const char *name = NULL;
    JsonNode *n = json_object_get_member(o, "name");
    if (n && !JSON_NODE_HOLDS_NULL(n)) {
        if (cmd != OTS_CONTROL_CMD_TRANSPORT_SHOW && cmd != OTS_CONTROL_CMD_TRANSPORT_SET &&
            cmd != OTS_CONTROL_CMD_TRANSPORT_TEST) {
            g_set_error(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_MALFORMED,
                        "\"%s\" takes no \"name\"", cmd_names[cmd]);
            return NULL;
        }
        if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING ||
            !valid_name(json_node_get_string(n))) {
            g_set_error_literal(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_MALFORMED,
                                "\"name\" must be a transport name (1-64 of A-Z a-z 0-9 _ - .)");
            return NULL;
        }
        name = json_node_get_string(n);
    }
    gboolean flags[2] = {FALSE, FALSE};
    const char *const flag_names[2] = {"persist", "clear"};
    for (guint i = 0; i < 2; i++) {
        JsonNode *fn = json_object_get_member(o, flag_names[i]);
        if (!fn || JSON_NODE_HOLDS_NULL(fn))
            continue;
        if (cmd != OTS_CONTROL_CMD_TRANSPORT_SET || !JSON_NODE_HOLDS_VALUE(fn) ||
            json_node_get_value_type(fn) != G_TYPE_BOOLEAN) {
            g_set_error(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_MALFORMED,
                        "\"%s\" is a boolean of \"transport.set\" only", flag_names[i]);
            return NULL;
        }
        flags[i] = json_node_get_boolean(fn);
    }
    if (cmd == OTS_CONTROL_CMD_TRANSPORT_SET && !name == !flags[1]) {
        g_set_error_literal(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_MALFORMED,
                            "\"transport.set\" needs either a transport \"name\" or "
                            "\"clear\":true");
        return NULL;
    }
    if (flags[0] && flags[1]) {
        g_set_error_literal(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_MALFORMED,
                            "\"persist\" and \"clear\" exclude each other");
        return NULL;
    }
    OtsControlRequest *req = g_new0(OtsControlRequest, 1);
    req->cmd = (OtsControlCmd)cmd;
    req->name = g_strdup(name);
    req->persist = flags[0];
    req->clear = flags[1];
    return req;
}

static char *
reply_line(JsonBuilder *b)
{
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    g_autoptr(JsonGenerator) gen = json_generator_new();
    json_generator_set_root(gen, root);
    char *text = json_generator_to_data(gen, NULL);
    char *line = g_strconcat(text, "\n", NULL);
    g_free(text);
    return line;
}

/**
 * ots_control_reply_ok:
 * @result: (transfer full) (nullable): the command's result
 *
 * Returns: (transfer full): `{"v":1,"ok":true,"result":...}` and a newline.
 */
char *
ots_control_reply_ok(JsonNode *result)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "v");
    json_builder_add_int_value(b, OTS_CONTROL_PROTOCOL_VERSION);
    json_builder_set_member_name(b, "ok");
    json_builder_add_boolean_value(b, TRUE);
    json_builder_set_member_name(b, "result");
    if (result)
        json_builder_add_value(b, result);
    else
        json_builder_add_null_value(b);
    json_builder_end_object(b);
    return reply_line(b);
}

/**
 * ots_control_reply_error:
 * @message: what went wrong (UTF-8)
 *
 * Returns: (transfer full): `{"v":1,"ok":false,"error":...}` and a newline.
 */
char *
ots_control_reply_error(const char *message)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "v");
    json_builder_add_int_value(b, OTS_CONTROL_PROTOCOL_VERSION);
    json_builder_set_member_name(b, "ok");
    json_builder_add_boolean_value(b, FALSE);
    json_builder_set_member_name(b, "error");
    json_builder_add_string_value(b, g_utf8_validate(message, -1, NULL) ? message : "(invalid)");
    json_builder_end_object(b);
    return reply_line(b);
}
