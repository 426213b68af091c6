/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the config loader: the input is config text for
 * ots_config_load_string(). Errors are expected; crashes, leaks and
 * undefined behaviour are not. A config that loads is then walked the way
 * the daemon and the plugins read it. Build and run: see the end of
 * docs/configuration.md. */

#include <stdint.h>
#include <string.h>

#include "core/config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A plugin-like spec, run over every transport group. */
static const OtsSettingSpec hop_spec[] = {
    {.name = "host", .type = OTS_SETTING_STRING, .required = TRUE, .min = 1, .max = 255},
    {.name = "port", .type = OTS_SETTING_INT, .min = 1, .max = 65535},
    {NULL},
};

static const char *const modes[] = {"a", "b", NULL};

static const OtsSettingSpec plugin_spec[] = {
    {.name = "path", .type = OTS_SETTING_STRING},
    {.name = "host", .type = OTS_SETTING_STRING, .choices = modes},
    {.name = "port", .type = OTS_SETTING_INT, .min = 1, .max = 65535},
    {.name = "weight", .type = OTS_SETTING_FLOAT, .min = -5, .max = 5},
    {.name = "tls", .type = OTS_SETTING_BOOL},
    {.name = "names", .type = OTS_SETTING_STRING_ARRAY, .min = 1, .max = 8},
    {.name = "ports", .type = OTS_SETTING_INT_ARRAY, .min = 1, .max = 65535},
    {.name = "hops", .type = OTS_SETTING_LIST, .children = hop_spec},
    {.name = "sub", .type = OTS_SETTING_GROUP, .children = hop_spec},
    {.name = "paths", .type = OTS_SETTING_MAP, .children = hop_spec},
    {NULL},
};

static const char *const paths[] = {
    "sensor.id",
    "flows.max_flows",
    "capture.interfaces",
    "capture.interfaces[0].name",
    "capture.interfaces[0].snaplen",
    "capture.files",
    "dissectors.modbus.tcp_ports",
    "dissectors.modbus.tcp_ports[0]",
    "output.transport",
    "logging.modules",
    "transports.local.path",
    "a.b[1].c[2]",
    "x[4294967296]",
    "..",
};

static void
walk(const OtsSettings *s, const char *path, guint depth)
{
    g_autoptr(GPtrArray) keys = ots_settings_get_keys(s);

    for (guint i = 0; i < keys->len; i++) {
        const char *k = g_ptr_array_index(keys, i);
        const char *str = NULL;
        gint64 v = 0;
        gboolean b = FALSE;
        double d = 0;

        (void)ots_settings_get_string(s, k, &str);
        (void)ots_settings_get_int(s, k, &v);
        (void)ots_settings_get_bool(s, k, &b);
        (void)ots_settings_get_float(s, k, &d);
        (void)ots_settings_get_location(s, k);
        guint n = ots_settings_get_length(s, k);
        for (guint j = 0; j < n && j < 8; j++) {
            (void)ots_settings_get_string_element(s, k, j);
            (void)ots_settings_get_int_element(s, k, j);
            const OtsSettings *e = ots_settings_get_element(s, k, j);
            if (e != NULL && depth < 8)
                walk(e, k, depth + 1);
        }
        const OtsSettings *g = ots_settings_get_group(s, k);
        if (g != NULL && depth < 8)
            walk(g, k, depth + 1);
    }
    (void)path;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256 * 1024)
        return 0;
    g_autofree char *text = g_strndup((const char *)data, size);
    g_autofree char *lower = g_ascii_strdown(text, -1);
    /* @include would read the files of the machine running the fuzzer. */
    if (strstr(lower, "@include") != NULL)
        return 0;

    GError *error = NULL;
    OtsConfig *c = ots_config_load_string(text, "fuzz.conf", &error);
    if (c == NULL) {
        /* Every failure explains itself. */
        if (error == NULL || error->domain != OTS_CONFIG_ERROR || error->message[0] == '\0')
            __builtin_trap();
        g_error_free(error);
        return 0;
    }
    if (error != NULL)
        __builtin_trap();

    const OtsSettings *root = ots_config_get_root(c);
    for (guint i = 0; i < G_N_ELEMENTS(paths); i++) {
        const char *s = NULL;
        gint64 v = 0;
        (void)ots_settings_get_string(root, paths[i], &s);
        (void)ots_settings_get_int(root, paths[i], &v);
        (void)ots_settings_get_group(root, paths[i]);
        (void)ots_settings_get_length(root, paths[i]);
        (void)ots_settings_get_location(root, paths[i]);
    }
    walk(root, "", 0);

    const OtsSettings *transports = ots_settings_get_group(root, "transports");
    g_autoptr(GPtrArray) names = ots_settings_get_keys(transports);
    for (guint i = 0; i < names->len; i++) {
        const char *name = g_ptr_array_index(names, i);
        g_autofree char *path = g_strconcat("transports.", name, NULL);
        if (!ots_settings_validate(ots_settings_get_group(transports, name), plugin_spec, path,
                                   &error)) {
            if (error == NULL)
                __builtin_trap();
            g_clear_error(&error);
        }
        ots_settings_set_error(transports, name, "transports", &error, OTS_CONFIG_ERROR_VALUE,
                               "checked %u", i);
        g_clear_error(&error);
        (void)ots_config_suggest(name, (const char *const *)names->pdata, names->len);
    }
    ots_config_free(c);
    return 0;
}
