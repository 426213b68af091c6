/* SPDX-License-Identifier: Apache-2.0 */
#include "core/log.h"
#include "core/config/config.h" /* ots_settings_get_keys */

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Ranks: lower is more severe; a message is kept when its rank is at most
 * the threshold. */
static const char *const level_names[] = {"error", "critical", "warning", "message",
                                          "info",  "debug",    NULL};
#define RANK_MESSAGE 3

typedef struct {
    int threshold;
    GHashTable *modules; /* module name -> GINT_TO_POINTER(rank + 1) */
} LogFilter;

static GRWLock filter_lock;
static LogFilter *filter;
static gboolean to_journal;

static int
level_rank(GLogLevelFlags level)
{
    if (level & G_LOG_LEVEL_ERROR)
        return 0;
    if (level & G_LOG_LEVEL_CRITICAL)
        return 1;
    if (level & G_LOG_LEVEL_WARNING)
        return 2;
    if (level & G_LOG_LEVEL_MESSAGE)
        return 3;
    if (level & G_LOG_LEVEL_INFO)
        return 4;
    return 5;
}

static int
rank_of_name(const char *name)
{
    for (int i = 0; level_names[i]; i++)
        if (g_strcmp0(name, level_names[i]) == 0)
            return i;
    return -1;
}

static void
filter_free(LogFilter *f)
{
    if (!f)
        return;
    g_clear_pointer(&f->modules, g_hash_table_unref);
    g_free(f);
}

/* "ots-dissector-modbus" -> "dissector_modbus"; other domains as they are. */
static char *
module_of_domain(const char *domain)
{
    if (!domain)
        return g_strdup("");
    if (g_str_has_prefix(domain, "ots-"))
        domain += 4;
    char *m = g_strdup(domain);
    g_strdelimit(m, "-", '_');
    return m;
}

gboolean
ots_log_enabled(const char *domain, GLogLevelFlags level)
{
    int rank = level_rank(level);
    g_rw_lock_reader_lock(&filter_lock);
    int threshold = filter ? filter->threshold : RANK_MESSAGE;
    if (filter && domain && g_hash_table_size(filter->modules) > 0) {
        char buf[96];
        gsize n =
            g_strlcpy(buf, g_str_has_prefix(domain, "ots-") ? domain + 4 : domain, sizeof(buf));
        if (n < sizeof(buf)) {
            g_strdelimit(buf, "-", '_');
            gpointer v = g_hash_table_lookup(filter->modules, buf);
            if (v)
                threshold = GPOINTER_TO_INT(v) - 1;
        }
    }
    g_rw_lock_reader_unlock(&filter_lock);
    return rank <= threshold;
}

static const char *
field_string(const GLogField *fields, gsize n_fields, const char *key)
{
    for (gsize i = 0; i < n_fields; i++)
        if (strcmp(fields[i].key, key) == 0 && fields[i].length < 0)
            return fields[i].value;
    return NULL;
}

/* GLib's line format, always on stderr: stdout may carry the NDJSON events
 * (-o -), and GLib's own stream writer sends info and debug to stdout. */
static GLogWriterOutput
write_line(GLogLevelFlags level, const GLogField *fields, gsize n_fields)
{
    g_autofree char *line = g_log_writer_format_fields(level, fields, n_fields,
                                                       g_log_writer_supports_color(STDERR_FILENO));
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
    return G_LOG_WRITER_HANDLED;
}

/* stderr: GLib's format, with the structured fields appended to MESSAGE. */
static GLogWriterOutput
write_stderr(GLogLevelFlags level, const GLogField *fields, gsize n_fields)
{
    const char *plugin = field_string(fields, n_fields, "PLUGIN");
    const char *transport = field_string(fields, n_fields, "TRANSPORT");
    const char *hop = field_string(fields, n_fields, "HOP");
    if (!plugin && !transport && !hop)
        return write_line(level, fields, n_fields);
    GString *msg = g_string_new(field_string(fields, n_fields, "MESSAGE"));
    g_string_append(msg, " (");
    const char *sep = "";
    if (plugin) {
        g_string_append_printf(msg, "plugin=%s", plugin);
        sep = " ";
    }
    if (transport) {
        g_string_append_printf(msg, "%stransport=%s", sep, transport);
        sep = " ";
    }
    if (hop)
        g_string_append_printf(msg, "%shop=%s", sep, hop);
    g_string_append_c(msg, ')');
    g_autofree GLogField *copy = g_new(GLogField, n_fields);
    for (gsize i = 0; i < n_fields; i++) {
        copy[i] = fields[i];
        if (strcmp(fields[i].key, "MESSAGE") == 0)
            copy[i] = (GLogField){"MESSAGE", msg->str, -1};
    }
    GLogWriterOutput out = write_line(level, copy, n_fields);
    g_string_free(msg, TRUE);
    return out;
}

static GLogWriterOutput
writer(GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
    /* Fatal messages are never filtered out. */
    if (!(level & (G_LOG_FLAG_FATAL | G_LOG_LEVEL_ERROR)) &&
        !ots_log_enabled(field_string(fields, n_fields, "GLIB_DOMAIN"), level))
        return G_LOG_WRITER_HANDLED;
    if (to_journal && g_log_writer_journald(level, fields, n_fields, NULL) == G_LOG_WRITER_HANDLED)
        return G_LOG_WRITER_HANDLED;
    return write_stderr(level, fields, n_fields);
}

void
ots_log_init(OtsLogTarget target)
{
    to_journal = target == OTS_LOG_TARGET_JOURNAL ||
                 (target == OTS_LOG_TARGET_AUTO && g_log_writer_is_journald(STDERR_FILENO));
    /* GLib drops info and debug before any writer sees them unless
     * G_MESSAGES_DEBUG says otherwise; this writer filters instead, per
     * module. Set once here, before threads: setenv is not thread-safe. */
    g_setenv("G_MESSAGES_DEBUG", "all", TRUE);
    g_log_set_writer_func(writer, NULL, NULL);
}

gboolean
ots_log_is_journal(void)
{
    return to_journal;
}

gboolean
ots_log_configure(const OtsSettings *root, const char *override_level, GError **error)
{
    const char *level = "message";
    if (root)
        ots_settings_get_string(root, "logging.level", &level);
    if (override_level)
        level = override_level;
    int threshold = rank_of_name(level);
    if (threshold < 0) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "unknown log level '%s' (error, critical, warning, message, info, debug)",
                    level);
        return FALSE;
    }
    LogFilter *f = g_new0(LogFilter, 1);
    f->threshold = threshold;
    f->modules = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    const OtsSettings *modules = root ? ots_settings_get_group(root, "logging.modules") : NULL;
    if (modules) {
        g_autoptr(GPtrArray) keys = ots_settings_get_keys(modules);
        for (guint i = 0; i < keys->len; i++) {
            const char *name = keys->pdata[i];
            const char *value = NULL;
            int rank;
            if (!ots_settings_get_string(modules, name, &value) ||
                (rank = rank_of_name(value)) < 0) {
                g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                            "logging.modules.%s: unknown log level '%s'", name, value ? value : "");
                filter_free(f);
                return FALSE;
            }
            g_autofree char *module = module_of_domain(name);
            g_hash_table_replace(f->modules, g_steal_pointer(&module), GINT_TO_POINTER(rank + 1));
        }
    }
    g_rw_lock_writer_lock(&filter_lock);
    LogFilter *old = filter;
    filter = f;
    g_rw_lock_writer_unlock(&filter_lock);
    filter_free(old);
    return TRUE;
}

void
ots_log_fields(const char *domain, GLogLevelFlags level, const char *plugin, const char *transport,
               const char *hop, const char *format, ...)
{
    if (!ots_log_enabled(domain, level))
        return;
    va_list ap;
    va_start(ap, format);
    g_autofree char *message = g_strdup_vprintf(format, ap);
    va_end(ap);
    /* syslog priorities, as g_log_structured() sets them. */
    static const char *const priorities[] = {"3", "4", "4", "5", "6", "7"};
    GLogField fields[7];
    gsize n = 0;
    fields[n++] = (GLogField){"MESSAGE", message, -1};
    fields[n++] = (GLogField){"PRIORITY", priorities[level_rank(level)], -1};
    fields[n++] = (GLogField){"GLIB_DOMAIN", domain ? domain : "otsensord", -1};
    if (plugin)
        fields[n++] = (GLogField){"PLUGIN", plugin, -1};
    if (transport)
        fields[n++] = (GLogField){"TRANSPORT", transport, -1};
    if (hop)
        fields[n++] = (GLogField){"HOP", hop, -1};
    g_log_structured_array(level, fields, n);
}
