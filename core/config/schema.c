/* SPDX-License-Identifier: Apache-2.0 */

/* The core schema of otsensor.conf, the embedded default configuration and
 * the checks a spec table cannot express. Keep the three in step with
 * etc/otsensor.conf and docs/configuration.md (the unit tests compare them).
 *
 * Conventions of the core tables beyond settings.h: for STRING and
 * STRING_ARRAY, min/max bound the length in characters when max > min; for
 * INT_ARRAY they bound each element. A GROUP with no children is free-form
 * (logging.modules, checked in ots_config_core_check()). */

#include <string.h>

#include "config-private.h"

static const char *const log_levels[] = {"error", "critical", "warning", "message",
                                         "info",  "debug",    NULL};

static const OtsSettingSpec sensor_spec[] = {
    {.name = "id",
     .type = OTS_SETTING_STRING,
     .required = TRUE,
     .min = 1,
     .max = 64,
     .help = "sensor identity in every event: 1..64 of A-Z a-z 0-9 . _ -"},
    {.name = "site",
     .type = OTS_SETTING_STRING,
     .min = 0,
     .max = 256,
     .help = "free text site label"},
    {.name = "state_dir",
     .type = OTS_SETTING_STRING,
     .min = 1,
     .max = 4096,
     .help = "directory of the spool and the persistent state"},
    {.name = "user",
     .type = OTS_SETTING_STRING,
     .min = 1,
     .max = 32,
     .help = "user to switch to after opening the capture when started as root"},
    {NULL},
};

static const OtsSettingSpec interface_spec[] = {
    {.name = "name",
     .type = OTS_SETTING_STRING,
     .required = TRUE,
     .min = 1,
     .max = 64,
     .help = "network interface to capture on"},
    {.name = "filter", .type = OTS_SETTING_STRING, .help = "BPF filter (pcap-filter syntax)"},
    {.name = "snaplen",
     .type = OTS_SETTING_INT,
     .min = 64,
     .max = 262144,
     .help = "bytes captured per packet"},
    {.name = "promiscuous",
     .type = OTS_SETTING_BOOL,
     .help = "put the interface in promiscuous mode"},
    {.name = "buffer_size_mb",
     .type = OTS_SETTING_INT,
     .min = 1,
     .max = 4096,
     .help = "kernel capture buffer, MiB"},
    {NULL},
};

static const OtsSettingSpec capture_spec[] = {
    {.name = "interfaces",
     .type = OTS_SETTING_LIST,
     .children = interface_spec,
     .help = "live capture sources"},
    {.name = "files",
     .type = OTS_SETTING_STRING_ARRAY,
     .min = 1,
     .max = 4096,
     .help = "capture files to read (offline)"},
    {.name = "event_queue_batches",
     .type = OTS_SETTING_INT,
     .min = 4,
     .max = 65536,
     .help = "bound of the worker to main thread event queue, in batches"},
    {.name = "workers",
     .type = OTS_SETTING_INT,
     .min = 0,
     .max = 16,
     .help = "flow shards (threads) per capture source; 0: the processors shared among the sources"},
    {NULL},
};

static const OtsSettingSpec flows_spec[] = {
    {.name = "max_flows",
     .type = OTS_SETTING_INT,
     .min = 1,
     .max = 16777216,
     .help = "flows tracked at once"},
    {.name = "tcp_idle_timeout",
     .type = OTS_SETTING_INT,
     .min = 1,
     .max = 86400,
     .help = "seconds before an idle TCP flow ends"},
    {.name = "udp_idle_timeout",
     .type = OTS_SETTING_INT,
     .min = 1,
     .max = 86400,
     .help = "seconds before an idle UDP flow ends"},
    {.name = "max_ooo_bytes",
     .type = OTS_SETTING_INT,
     .min = 0,
     .max = 67108864,
     .help = "out-of-order bytes buffered per TCP direction"},
    {.name = "max_pdu_bytes",
     .type = OTS_SETTING_INT,
     .min = 256,
     .max = 16777216,
     .help = "bytes kept for an incomplete PDU per direction"},
    {.name = "memcap_mb",
     .type = OTS_SETTING_INT,
     .min = 16,
     .max = 1048576,
     .help = "MiB all flows together may hold: out-of-order TCP data, incomplete PDUs, "
             "dissector state"},
    {.name = "flow_events", .type = OTS_SETTING_BOOL, .help = "emit a flow event at flow end"},
    {NULL},
};

static const OtsSettingSpec plugins_spec[] = {
    {.name = "paths",
     .type = OTS_SETTING_STRING_ARRAY,
     .min = 1,
     .max = 4096,
     .help = "plugin directories searched before the default one"},
    {.name = "disable",
     .type = OTS_SETTING_STRING_ARRAY,
     .min = 1,
     .max = 64,
     .help = "plugin names not to load"},
    {NULL},
};

static const OtsSettingSpec dissector_spec[] = {
    {.name = "enabled", .type = OTS_SETTING_BOOL, .help = "run this dissector"},
    {.name = "tcp_ports",
     .type = OTS_SETTING_INT_ARRAY,
     .min = 1,
     .max = 65535,
     .help = "TCP ports dispatched to it (replaces the plugin's own)"},
    {.name = "udp_ports",
     .type = OTS_SETTING_INT_ARRAY,
     .min = 1,
     .max = 65535,
     .help = "UDP ports dispatched to it (replaces the plugin's own)"},
    {.name = "heuristic",
     .type = OTS_SETTING_BOOL,
     .help = "probe traffic on other ports with its heuristic"},
    {NULL},
};

static const OtsSettingSpec output_spec[] = {
    {.name = "transport",
     .type = OTS_SETTING_STRING,
     .min = 1,
     .max = 64,
     .help = "active transport plugin (a key of transports)"},
    {.name = "heartbeat_interval",
     .type = OTS_SETTING_INT,
     .min = 0,
     .max = 86400,
     .help = "seconds between sensor health events, 0: off"},
    {NULL},
};

static const char *const fsync_modes[] = {"always", "batch", "interval", NULL};
static const char *const drop_policies[] = {"oldest", "newest", NULL};

static const OtsSettingSpec spool_spec[] = {
    {.name = "path",
     .type = OTS_SETTING_STRING,
     .min = 1,
     .max = 4096,
     .help = "directory of the store-and-forward spool"},
    {.name = "max_size_mb",
     .type = OTS_SETTING_INT,
     .min = 1,
     .max = 1048576,
     .help = "bound of the spool on disk, MiB"},
    {.name = "segment_size_mb",
     .type = OTS_SETTING_INT,
     .min = 1,
     .max = 1024,
     .help = "size of one segment file, MiB"},
    {.name = "fsync",
     .type = OTS_SETTING_STRING,
     .choices = fsync_modes,
     .help = "when appended events reach the disk"},
    {.name = "fsync_interval_ms",
     .type = OTS_SETTING_INT,
     .min = 1,
     .max = 3600000,
     .help = "fsync period for fsync = \"interval\""},
    {.name = "drop",
     .type = OTS_SETTING_STRING,
     .choices = drop_policies,
     .help = "what gives way when the spool is full"},
    {NULL},
};

static const OtsSettingSpec uplink_spec[] = {
    {.name = "endpoint",
     .type = OTS_SETTING_STRING,
     .min = 9,
     .max = 2048,
     .help = "cloud ingestion URL: https://host[:port][/path]"},
    {.name = "server_name",
     .type = OTS_SETTING_STRING,
     .min = 0,
     .max = 253,
     .help = "name the TLS certificate must match when the endpoint is an address"},
    {.name = "ca_file",
     .type = OTS_SETTING_STRING,
     .min = 0,
     .max = 4096,
     .help = "CA bundle (PEM) the server is verified against; empty: system store"},
    {.name = "pins",
     .type = OTS_SETTING_STRING_ARRAY,
     .min = 52,
     .max = 52,
     .help = "SHA-256 SPKI pins of the server key, \"sha256//BASE64\""},
    {.name = "client_cert",
     .type = OTS_SETTING_STRING,
     .min = 0,
     .max = 4096,
     .help = "client certificate chain (PEM) for mTLS; empty: none"},
    {.name = "client_key",
     .type = OTS_SETTING_STRING,
     .min = 0,
     .max = 4096,
     .help = "private key (PEM) of the client certificate"},
    {.name = "priority",
     .type = OTS_SETTING_STRING,
     .min = 0,
     .max = 1024,
     .help = "GnuTLS priority string; empty: the built-in policy"},
    {.name = "token_file",
     .type = OTS_SETTING_STRING,
     .min = 0,
     .max = 4096,
     .help = "file holding a bearer token; empty: none"},
    {.name = "gzip", .type = OTS_SETTING_BOOL, .help = "gzip the batches"},
    {.name = "batch_max_events",
     .type = OTS_SETTING_INT,
     .min = 1,
     .max = 1000000,
     .help = "events in one POST at most"},
    {.name = "batch_max_bytes",
     .type = OTS_SETTING_INT,
     .min = 1024,
     .max = 268435456,
     .help = "NDJSON bytes in one POST at most"},
    {.name = "batch_max_delay_ms",
     .type = OTS_SETTING_INT,
     .min = 0,
     .max = 600000,
     .help = "longest an event waits for its batch to fill"},
    {.name = "connect_timeout_ms",
     .type = OTS_SETTING_INT,
     .min = 100,
     .max = 600000,
     .help = "connection (all hops) and TLS handshake deadline"},
    {.name = "io_timeout_ms",
     .type = OTS_SETTING_INT,
     .min = 100,
     .max = 3600000,
     .help = "longest wait for progress while sending or for the answer"},
    {.name = "backoff_min_ms",
     .type = OTS_SETTING_INT,
     .min = 10,
     .max = 3600000,
     .help = "first retry delay"},
    {.name = "backoff_max_ms",
     .type = OTS_SETTING_INT,
     .min = 10,
     .max = 86400000,
     .help = "longest retry delay (and the delay after an authentication failure)"},
    {NULL},
};

static const OtsSettingSpec logging_spec[] = {
    {.name = "level",
     .type = OTS_SETTING_STRING,
     .choices = log_levels,
     .help = "lowest level logged"},
    {.name = "modules", .type = OTS_SETTING_GROUP, .help = "per-module levels: module = \"level\""},
    {NULL},
};

static const OtsSettingSpec control_spec[] = {
    {.name = "enabled",
     .type = OTS_SETTING_BOOL,
     .help = "serve the control socket (otsensorctl)"},
    {.name = "socket",
     .type = OTS_SETTING_STRING,
     .min = 1,
     .max = 107,
     .help = "path of the control socket (a UNIX socket path holds at most 107 bytes)"},
    {.name = "group",
     .type = OTS_SETTING_STRING,
     .min = 0,
     .max = 64,
     .help = "members of this group may use the control socket (\"\": root and the daemon's "
             "user only)"},
    {NULL},
};

static const OtsSettingSpec core_spec[] = {
    {.name = "sensor", .type = OTS_SETTING_GROUP, .required = TRUE, .children = sensor_spec},
    {.name = "capture", .type = OTS_SETTING_GROUP, .children = capture_spec},
    {.name = "flows", .type = OTS_SETTING_GROUP, .children = flows_spec},
    {.name = "plugins", .type = OTS_SETTING_GROUP, .children = plugins_spec},
    {.name = "dissectors", .type = OTS_SETTING_MAP, .children = dissector_spec},
    {.name = "output", .type = OTS_SETTING_GROUP, .children = output_spec},
    {.name = "spool", .type = OTS_SETTING_GROUP, .children = spool_spec},
    {.name = "uplink", .type = OTS_SETTING_GROUP, .children = uplink_spec},
    /* Each transport plugin validates its own group. */
    {.name = "transports", .type = OTS_SETTING_MAP, .children = NULL},
    {.name = "logging", .type = OTS_SETTING_GROUP, .children = logging_spec},
    {.name = "control", .type = OTS_SETTING_GROUP, .children = control_spec},
    {NULL},
};

/**
 * ots_config_core_schema:
 *
 * Returns: (transfer none): the spec table of the root of otsensor.conf.
 */
const OtsSettingSpec *
ots_config_core_schema(void)
{
    return core_spec;
}

/* etc/otsensor.conf without its comments, except: no capture interface
 * (offline use: otsensord -r FILE) and events written to stdout. */
const char ots_config_default_text[] = "sensor: {\n"
                                       "  id = \"otsensor-lab\";\n"
                                       "  site = \"\";\n"
                                       "  state_dir = \"/var/lib/otsensor\";\n"
                                       "  user = \"otsensor\";\n"
                                       "};\n"
                                       "capture: {\n"
                                       "  interfaces = ( );\n"
                                       "  files = [ ];\n"
                                       "  event_queue_batches = 256;\n"
                                       "  workers = 0;\n"
                                       "};\n"
                                       "flows: {\n"
                                       "  max_flows = 131072;\n"
                                       "  tcp_idle_timeout = 600;\n"
                                       "  udp_idle_timeout = 120;\n"
                                       "  max_ooo_bytes = 262144;\n"
                                       "  max_pdu_bytes = 65536;\n"
                                       "  memcap_mb = 512;\n"
                                       "  flow_events = true;\n"
                                       "};\n"
                                       "plugins: {\n"
                                       "  paths = [ ];\n"
                                       "  disable = [ ];\n"
                                       "};\n"
                                       "dissectors: {\n"
                                       "  modbus: {\n"
                                       "    enabled = true;\n"
                                       "    tcp_ports = [ 502 ];\n"
                                       "    udp_ports = [ ];\n"
                                       "    heuristic = true;\n"
                                       "  };\n"
                                       "};\n"
                                       "output: {\n"
                                       "  transport = \"local\";\n"
                                       "  heartbeat_interval = 60;\n"
                                       "};\n"
                                       "spool: {\n"
                                       "  path = \"/var/lib/otsensor/spool\";\n"
                                       "  max_size_mb = 1024;\n"
                                       "  segment_size_mb = 16;\n"
                                       "  fsync = \"batch\";\n"
                                       "  fsync_interval_ms = 1000;\n"
                                       "  drop = \"oldest\";\n"
                                       "};\n"
                                       "uplink: {\n"
                                       "  endpoint = \"https://cloud.test:443/ingest\";\n"
                                       "  server_name = \"\";\n"
                                       "  ca_file = \"\";\n"
                                       "  pins = [ ];\n"
                                       "  client_cert = \"\";\n"
                                       "  client_key = \"\";\n"
                                       "  priority = \"\";\n"
                                       "  token_file = \"\";\n"
                                       "  gzip = false;\n"
                                       "  batch_max_events = 5000;\n"
                                       "  batch_max_bytes = 4194304;\n"
                                       "  batch_max_delay_ms = 1000;\n"
                                       "  connect_timeout_ms = 10000;\n"
                                       "  io_timeout_ms = 30000;\n"
                                       "  backoff_min_ms = 500;\n"
                                       "  backoff_max_ms = 60000;\n"
                                       "};\n"
                                       "transports: {\n"
                                       "  local: {\n"
                                       "    path = \"-\";\n"
                                       "  };\n"
                                       "};\n"
                                       "logging: {\n"
                                       "  level = \"message\";\n"
                                       "  modules: { };\n"
                                       "};\n"
                                       "control: {\n"
                                       "  enabled = true;\n"
                                       "  socket = \"/run/otsensor/control.sock\";\n"
                                       "  group = \"\";\n"
                                       "};\n";

/* The keys an element of a list leaves out answer from here. */
const char ots_config_template_text[] = "capture: {\n"
                                        "  interfaces = ( {\n"
                                        "    filter = \"\";\n"
                                        "    snaplen = 65535;\n"
                                        "    promiscuous = true;\n"
                                        "    buffer_size_mb = 32;\n"
                                        "  } );\n"
                                        "};\n";

static gboolean
is_level(const char *value)
{
    for (guint i = 0; log_levels[i] != NULL; i++)
        if (strcmp(value, log_levels[i]) == 0)
            return TRUE;
    return FALSE;
}

static gboolean
check_sensor_id(const config_setting_t *setting, const char *path, const char *name, GError **error)
{
    const char *id = config_setting_get_string(setting);

    for (const char *p = id; *p != '\0'; p++) {
        if (g_ascii_isalnum(*p) || *p == '.' || *p == '_' || *p == '-')
            continue;
        g_autofree char *quoted = ots_config_quote(id);
        ots_config_set_error_at(error, OTS_CONFIG_ERROR_VALUE, setting, name, path,
                                "'%s' may only hold the characters A-Z a-z 0-9 . _ -", quoted);
        return FALSE;
    }
    return TRUE;
}

static gboolean
check_log_modules(const config_setting_t *setting, const char *path, const char *name,
                  GError **error)
{
    int n = config_setting_length(setting);

    for (int i = 0; i < n; i++) {
        const config_setting_t *m = config_setting_get_elem(setting, (unsigned)i);
        g_autofree char *mpath = ots_config_join_path(path, config_setting_name(m));

        if (config_setting_type(m) != CONFIG_TYPE_STRING) {
            ots_config_set_error_at(error, OTS_CONFIG_ERROR_TYPE, m, name, mpath,
                                    "expected a string, got %s",
                                    ots_config_type_name(config_setting_type(m)));
            return FALSE;
        }
        const char *value = config_setting_get_string(m);
        if (!is_level(value)) {
            g_autofree char *quoted = ots_config_quote(value);
            g_autofree char *allowed = g_strjoinv(", ", (char **)log_levels);
            const char *hint =
                ots_config_suggest(value, log_levels, g_strv_length((char **)log_levels));
            g_autofree char *did = hint ? g_strdup_printf(" (did you mean '%s'?)", hint) : NULL;
            ots_config_set_error_at(error, OTS_CONFIG_ERROR_VALUE, m, name, mpath,
                                    "'%s' is not one of: %s%s", quoted, allowed, did ? did : "");
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean
check_interfaces(const config_setting_t *setting, const char *path, const char *name,
                 GError **error)
{
    int n = config_setting_length(setting);

    for (int i = 0; i < n; i++) {
        const char *a = NULL;
        const config_setting_t *ei = config_setting_get_elem(setting, (unsigned)i);
        if (!config_setting_lookup_string(ei, "name", &a))
            continue;
        for (int j = 0; j < i; j++) {
            const char *b = NULL;
            const config_setting_t *ej = config_setting_get_elem(setting, (unsigned)j);
            if (!config_setting_lookup_string(ej, "name", &b) || strcmp(a, b) != 0)
                continue;
            g_autofree char *quoted = ots_config_quote(a);
            g_autofree char *epath = g_strdup_printf("%s[%d].name", path, i);
            ots_config_set_error_at(error, OTS_CONFIG_ERROR_VALUE,
                                    config_setting_get_member(ei, "name"), name, epath,
                                    "interface '%s' is already listed as %s[%d]", quoted, path, j);
            return FALSE;
        }
    }
    return TRUE;
}

/* https://host[:port][/path], nothing else: the uplink speaks TLS only. */
static gboolean
check_endpoint(const config_setting_t *setting, const char *path, const char *name, GError **error)
{
    const char *url = config_setting_get_string(setting);
    g_autoptr(GUri) uri = g_uri_parse(url, G_URI_FLAGS_NONE, NULL);

    if (uri && g_strcmp0(g_uri_get_scheme(uri), "https") == 0 && g_uri_get_host(uri) &&
        *g_uri_get_host(uri) && !g_uri_get_userinfo(uri) && !g_uri_get_fragment(uri))
        return TRUE;
    g_autofree char *quoted = ots_config_quote(url);
    ots_config_set_error_at(error, OTS_CONFIG_ERROR_VALUE, setting, name, path,
                            "'%s' is not an https://host[:port][/path] URL", quoted);
    return FALSE;
}

static gboolean
check_pins(const config_setting_t *setting, const char *path, const char *name, GError **error)
{
    int n = config_setting_length(setting);

    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(setting, (unsigned)i);
        const char *pin = config_setting_get_string(e);
        gsize len = 0;
        gboolean ok = pin && g_str_has_prefix(pin, "sha256//");
        for (const char *p = ok ? pin + 8 : ""; ok && *p; p++)
            ok = g_ascii_isalnum(*p) || *p == '+' || *p == '/' || *p == '=';
        if (ok)
            g_free(g_base64_decode(pin + 8, &len));
        if (ok && len == 32)
            continue;
        g_autofree char *epath = g_strdup_printf("%s[%d]", path, i);
        g_autofree char *quoted = ots_config_quote(pin ? pin : "");
        ots_config_set_error_at(error, OTS_CONFIG_ERROR_VALUE, e, name, epath,
                                "'%s' is not sha256// followed by the base64 of 32 bytes", quoted);
        return FALSE;
    }
    return TRUE;
}

gboolean
ots_config_core_check(const config_setting_t *setting, const OtsSettingSpec *spec, const char *path,
                      const char *name, GError **error)
{
    if (strcmp(path, "sensor.id") == 0)
        return check_sensor_id(setting, path, name, error);
    if (strcmp(path, "logging.modules") == 0)
        return check_log_modules(setting, path, name, error);
    if (strcmp(path, "capture.interfaces") == 0)
        return check_interfaces(setting, path, name, error);
    if (strcmp(path, "uplink.endpoint") == 0)
        return check_endpoint(setting, path, name, error);
    if (strcmp(path, "uplink.pins") == 0)
        return check_pins(setting, path, name, error);
    return TRUE;
}
