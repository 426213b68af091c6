/* SPDX-License-Identifier: Apache-2.0 */
/* The control commands: what each request answers, from what the daemon
 * lends (OtsControlProvider). Nothing here may reveal a secret setting. */
#include "ots-build-config.h"
#include "core/config/config.h"
#include "core/control/server.h"

#include <otsensor/plugin.h>
#include <otsensor/transport.h>
#include <string.h>

/* Keys shown as "(secret)" even when a plugin forgot to mark them. */
static const char *const secret_keys[] = {"password",   "password_file", "token",
                                          "token_file", "key",           NULL};

static gboolean
is_secret(const OtsSettingSpec *spec)
{
    return spec->secret || g_strv_contains(secret_keys, spec->name);
}

static guint64
sum_events(JsonObject *status)
{
    guint64 total = 0;
    JsonObject *ev = json_object_has_member(status, "events")
                         ? json_object_get_object_member(status, "events")
                         : NULL;
    if (!ev)
        return 0;
    g_autoptr(GList) members = json_object_get_members(ev);
    for (GList *l = members; l; l = l->next) {
        JsonNode *n = json_object_get_member(ev, l->data);
        if (JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_INT64)
            total += (guint64)json_node_get_int(n);
    }
    return total;
}

/* events/s between two status requests at least a second apart; before the
 * first such pair, the average since the start. */
static void
add_rate(JsonObject *status, OtsControlRate *rate)
{
    guint64 total = sum_events(status);
    gint64 now = g_get_monotonic_time();
    double per_s = 0;
    if (rate && rate->t && now - rate->t >= G_USEC_PER_SEC) {
        per_s =
            (double)(total - MIN(total, rate->events)) * G_USEC_PER_SEC / (double)(now - rate->t);
        rate->per_s = per_s;
        rate->t = now;
        rate->events = total;
    } else if (rate && rate->t) {
        per_s = rate->per_s;
    } else {
        gint64 up = json_object_has_member(status, "uptime_s")
                        ? json_object_get_int_member(status, "uptime_s")
                        : 0;
        per_s = up > 0 ? (double)total / (double)up : 0;
        if (rate) {
            rate->t = now;
            rate->events = total;
            rate->per_s = per_s;
        }
    }
    json_object_set_int_member(status, "events_total", (gint64)total);
    json_object_set_double_member(status, "events_per_s", per_s);
}

/* The spool says when its oldest unsent event happened; the operator wants
 * to know how long ago that was. */
static void
add_spool_age(JsonObject *status)
{
    if (!json_object_has_member(status, "spool"))
        return;
    JsonNode *sn = json_object_get_member(status, "spool");
    if (!JSON_NODE_HOLDS_OBJECT(sn))
        return;
    JsonObject *spool = json_node_get_object(sn);
    JsonNode *o = json_object_get_member(spool, "oldest_unacked");
    if (!o || json_node_get_value_type(o) != G_TYPE_STRING)
        return;
    g_autoptr(GDateTime) t = g_date_time_new_from_iso8601(json_node_get_string(o), NULL);
    if (!t)
        return;
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    GTimeSpan age = g_date_time_difference(now, t);
    json_object_set_double_member(spool, "oldest_unacked_age_s",
                                  (double)MAX(age, 0) / G_USEC_PER_SEC);
}

static JsonNode *
cmd_status(const OtsControlProvider *p, OtsControlRate *rate, GError **error)
{
    g_autofree char *text = p->status(p->user);
    g_autoptr(JsonParser) parser = json_parser_new();
    if (!text || !json_parser_load_from_data(parser, text, -1, error) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        g_clear_error(error);
        g_set_error_literal(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_FAILED,
                            "the daemon's status is not available");
        return NULL;
    }
    JsonNode *root = json_parser_steal_root(parser);
    JsonObject *o = json_node_get_object(root);
    /* The health event's envelope says nothing about the sensor. */
    json_object_remove_member(o, "type");
    json_object_remove_member(o, "reason");
    add_rate(o, rate);
    add_spool_age(o);
    return root;
}

/* Numbers, and the objects and arrays holding them; "source" names stay so
 * each capture's counters can be told apart. */
static JsonNode *
counters_only(JsonNode *n)
{
    if (JSON_NODE_HOLDS_OBJECT(n)) {
        JsonObject *in = json_node_get_object(n);
        JsonObject *out = json_object_new();
        g_autoptr(GList) members = json_object_get_members(in);
        for (GList *l = members; l; l = l->next) {
            JsonNode *m = json_object_get_member(in, l->data);
            if (strcmp(l->data, "source") == 0 && json_node_get_value_type(m) == G_TYPE_STRING) {
                json_object_set_member(out, l->data, json_node_copy(m));
                continue;
            }
            JsonNode *c = counters_only(m);
            if (c)
                json_object_set_member(out, l->data, c);
        }
        JsonNode *r = json_node_new(JSON_NODE_OBJECT);
        json_node_take_object(r, out);
        return r;
    }
    if (JSON_NODE_HOLDS_ARRAY(n)) {
        JsonArray *in = json_node_get_array(n);
        JsonArray *out = json_array_new();
        for (guint i = 0; i < json_array_get_length(in); i++) {
            JsonNode *c = counters_only(json_array_get_element(in, i));
            if (c)
                json_array_add_element(out, c);
        }
        JsonNode *r = json_node_new(JSON_NODE_ARRAY);
        json_node_take_array(r, out);
        return r;
    }
    GType t = JSON_NODE_HOLDS_VALUE(n) ? json_node_get_value_type(n) : G_TYPE_INVALID;
    if (t == G_TYPE_INT64 || t == G_TYPE_DOUBLE)
        return json_node_copy(n);
    return NULL;
}

/**
 * ots_control_stats_from_status:
 * @status: a `status` result
 *
 * Returns: (transfer full): its counters (numbers only).
 */
JsonNode *
ots_control_stats_from_status(JsonNode *status)
{
    JsonNode *r = counters_only(status);
    return r ? r : json_node_new(JSON_NODE_NULL);
}

static const char *
kind_name(guint32 kind)
{
    return kind == OTS_PLUGIN_KIND_DISSECTOR   ? "dissector"
           : kind == OTS_PLUGIN_KIND_TRANSPORT ? "transport"
                                               : "other";
}

static JsonNode *
cmd_version(const OtsControlProvider *p)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "version");
    json_builder_add_string_value(b, OTS_VERSION);
    json_builder_set_member_name(b, "abi");
    g_autofree char *abi = g_strdup_printf("%d.%d", OTS_ABI_MAJOR, OTS_ABI_MINOR);
    json_builder_add_string_value(b, abi);
    json_builder_set_member_name(b, "plugins");
    json_builder_begin_array(b);
    for (guint i = 0; p->plugins && i < p->plugins->plugins->len; i++) {
        const OtsPlugin *pl = g_ptr_array_index(p->plugins->plugins, i);
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "kind");
        json_builder_add_string_value(b, kind_name(pl->header->kind));
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, pl->header->name);
        json_builder_set_member_name(b, "version");
        json_builder_add_string_value(b, pl->header->version ? pl->header->version : "?");
        json_builder_set_member_name(b, "abi");
        g_autofree char *pabi =
            g_strdup_printf("%u.%u", pl->header->abi_major, pl->header->abi_minor);
        json_builder_add_string_value(b, pabi);
        json_builder_set_member_name(b, "path");
        json_builder_add_string_value(b, pl->path ? pl->path : "(built in)");
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_set_member_name(b, "refused");
    json_builder_begin_array(b);
    for (guint i = 0; p->plugins && i < p->plugins->refused->len; i++)
        json_builder_add_string_value(b, g_ptr_array_index(p->plugins->refused, i));
    json_builder_end_array(b);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}

static const OtsSettings *
transport_group(const OtsControlProvider *p, const char *name)
{
    const OtsSettings *root = p->settings(p->user);
    const OtsSettings *tr = root ? ots_settings_get_group(root, "transports") : NULL;
    return tr ? ots_settings_get_group(tr, name) : NULL;
}

static JsonNode *
cmd_transport_list(const OtsControlProvider *p)
{
    const char *active = p->active_transport(p->user);
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "active");
    json_builder_add_string_value(b, active ? active : "");
    json_builder_set_member_name(b, "transports");
    json_builder_begin_array(b);
    for (guint i = 0; p->plugins && i < p->plugins->plugins->len; i++) {
        const OtsPlugin *pl = g_ptr_array_index(p->plugins->plugins, i);
        if (pl->header->kind != OTS_PLUGIN_KIND_TRANSPORT)
            continue;
        const OtsTransportInfo *t = (const OtsTransportInfo *)pl->header;
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, t->name);
        json_builder_set_member_name(b, "version");
        json_builder_add_string_value(b, t->version ? t->version : "?");
        json_builder_set_member_name(b, "description");
        json_builder_add_string_value(b, t->description ? t->description : "");
        json_builder_set_member_name(b, "active");
        json_builder_add_boolean_value(b, g_strcmp0(active, t->name) == 0);
        json_builder_set_member_name(b, "configured");
        json_builder_add_boolean_value(b, transport_group(p, t->name) != NULL);
        json_builder_set_member_name(b, "raw");
        json_builder_add_boolean_value(b, (t->flags & OTS_TRANSPORT_FLAG_RAW) != 0);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    /* Configured groups, including any naming a plugin that is not loaded. */
    json_builder_set_member_name(b, "configured");
    json_builder_begin_array(b);
    const OtsSettings *root = p->settings(p->user);
    const OtsSettings *tr = root ? ots_settings_get_group(root, "transports") : NULL;
    if (tr) {
        g_autoptr(GPtrArray) keys = ots_settings_get_keys(tr);
        for (guint i = 0; keys && i < keys->len; i++)
            json_builder_add_string_value(b, g_ptr_array_index(keys, i));
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}

static void add_group(JsonBuilder *b, const OtsSettings *g, const OtsSettingSpec *spec,
                      guint depth);

static void
add_setting(JsonBuilder *b, const OtsSettings *g, const OtsSettingSpec *sp, guint depth)
{
    const char *s;
    gint64 i;
    gboolean bo;
    double f;
    guint n;
    switch (sp->type) {
    case OTS_SETTING_STRING:
        if (ots_settings_get_string(g, sp->name, &s)) {
            json_builder_set_member_name(b, sp->name);
            json_builder_add_string_value(b, s);
        }
        break;
    case OTS_SETTING_INT:
        if (ots_settings_get_int(g, sp->name, &i)) {
            json_builder_set_member_name(b, sp->name);
            json_builder_add_int_value(b, i);
        }
        break;
    case OTS_SETTING_BOOL:
        if (ots_settings_get_bool(g, sp->name, &bo)) {
            json_builder_set_member_name(b, sp->name);
            json_builder_add_boolean_value(b, bo);
        }
        break;
    case OTS_SETTING_FLOAT:
        if (ots_settings_get_float(g, sp->name, &f)) {
            json_builder_set_member_name(b, sp->name);
            json_builder_add_double_value(b, f);
        }
        break;
    case OTS_SETTING_STRING_ARRAY:
    case OTS_SETTING_INT_ARRAY:
        if (!ots_settings_get_group(g, sp->name) && ots_settings_get_length(g, sp->name) == 0)
            break;
        n = ots_settings_get_length(g, sp->name);
        json_builder_set_member_name(b, sp->name);
        json_builder_begin_array(b);
        for (guint k = 0; k < n; k++) {
            if (sp->type == OTS_SETTING_STRING_ARRAY && strcmp(sp->name, "headers") == 0) {
                /* Extra request headers may carry credentials: names only. */
                const char *h = ots_settings_get_string_element(g, sp->name, k);
                const char *colon = h ? strchr(h, ':') : NULL;
                g_autofree char *shown =
                    colon ? g_strdup_printf("%.*s: (secret)", (int)(colon - h), h)
                          : g_strdup("(secret)");
                json_builder_add_string_value(b, shown);
            } else if (sp->type == OTS_SETTING_STRING_ARRAY)
                json_builder_add_string_value(b, ots_settings_get_string_element(g, sp->name, k));
            else
                json_builder_add_int_value(b, ots_settings_get_int_element(g, sp->name, k));
        }
        json_builder_end_array(b);
        break;
    case OTS_SETTING_GROUP: {
        const OtsSettings *sub = ots_settings_get_group(g, sp->name);
        if (!sub)
            break;
        json_builder_set_member_name(b, sp->name);
        add_group(b, sub, sp->children, depth + 1);
        break;
    }
    case OTS_SETTING_LIST:
        n = ots_settings_get_length(g, sp->name);
        if (n == 0)
            break;
        json_builder_set_member_name(b, sp->name);
        json_builder_begin_array(b);
        for (guint k = 0; k < n; k++)
            add_group(b, ots_settings_get_element(g, sp->name, k), sp->children, depth + 1);
        json_builder_end_array(b);
        break;
    case OTS_SETTING_MAP: {
        const OtsSettings *sub = ots_settings_get_group(g, sp->name);
        if (!sub)
            break;
        json_builder_set_member_name(b, sp->name);
        json_builder_begin_object(b);
        g_autoptr(GPtrArray) keys = ots_settings_get_keys(sub);
        for (guint k = 0; keys && k < keys->len; k++) {
            json_builder_set_member_name(b, g_ptr_array_index(keys, k));
            add_group(b, ots_settings_get_group(sub, g_ptr_array_index(keys, k)), sp->children,
                      depth + 1);
        }
        json_builder_end_object(b);
        break;
    }
    default:
        break;
    }
}

/* Only keys the plugin's spec names are shown, so nothing the spec does not
 * know (and so cannot mark secret) leaks. */
static void
add_group(JsonBuilder *b, const OtsSettings *g, const OtsSettingSpec *spec, guint depth)
{
    json_builder_begin_object(b);
    for (const OtsSettingSpec *sp = spec; g && sp && sp->name && depth < 8; sp++) {
        if (is_secret(sp)) {
            /* Say it is set, never what it is. */
            if (ots_settings_get_location(g, sp->name) == NULL)
                continue;
            json_builder_set_member_name(b, sp->name);
            json_builder_add_string_value(b, "(secret)");
            continue;
        }
        add_setting(b, g, sp, depth);
    }
    json_builder_end_object(b);
}

static JsonNode *
cmd_transport_show(const OtsControlProvider *p, const char *name, GError **error)
{
    const char *active = p->active_transport(p->user);
    if (!name)
        name = active;
    const OtsPlugin *pl = p->plugins && name
                              ? ots_plugin_set_find(p->plugins, OTS_PLUGIN_KIND_TRANSPORT, name)
                              : NULL;
    if (!pl) {
        g_set_error(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_NOT_FOUND,
                    "no transport plugin named '%s'", name ? name : "");
        return NULL;
    }
    const OtsTransportInfo *t = (const OtsTransportInfo *)pl->header;
    const OtsSettings *g = transport_group(p, t->name);
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "name");
    json_builder_add_string_value(b, t->name);
    json_builder_set_member_name(b, "active");
    json_builder_add_boolean_value(b, g_strcmp0(active, t->name) == 0);
    json_builder_set_member_name(b, "configured");
    json_builder_add_boolean_value(b, g != NULL);
    json_builder_set_member_name(b, "settings");
    add_group(b, g, t->settings, 0);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}

/**
 * ots_control_dispatch:
 * @provider: what the daemon lends
 * @rate: (nullable): the events/s sampler kept between status requests
 * @req: a parsed request
 * @error: why the command failed
 *
 * Returns: (transfer full) (nullable): the result.
 */
JsonNode *
ots_control_dispatch(const OtsControlProvider *provider, OtsControlRate *rate,
                     const OtsControlRequest *req, GError **error)
{
    switch (req->cmd) {
    case OTS_CONTROL_CMD_STATUS:
        return cmd_status(provider, rate, error);
    case OTS_CONTROL_CMD_STATS: {
        g_autoptr(JsonNode) st = cmd_status(provider, rate, error);
        return st ? ots_control_stats_from_status(st) : NULL;
    }
    case OTS_CONTROL_CMD_VERSION:
        return cmd_version(provider);
    case OTS_CONTROL_CMD_TRANSPORT_LIST:
        return cmd_transport_list(provider);
    case OTS_CONTROL_CMD_TRANSPORT_SHOW:
        return cmd_transport_show(provider, req->name, error);
    case OTS_CONTROL_CMD_TRANSPORT_SET:
    case OTS_CONTROL_CMD_TRANSPORT_TEST:
    case OTS_CONTROL_CMD_RELOAD:
        /* Asynchronous: the server hands them to the provider itself. */
        g_set_error_literal(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_FAILED,
                            "asynchronous command");
        return NULL;
    }
    g_set_error_literal(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_UNKNOWN_CMD, "unknown command");
    return NULL;
}
