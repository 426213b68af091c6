/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Configuration: libconfig files validated against OtsSettingSpec tables
 * (the same tables plugins declare). Every error names the file, the line
 * and the full key path, and says what is wrong; the daemon exits with
 * OTS_EXIT_CONFIG (78, EX_CONFIG) on one. */

#include <glib.h>
#include <otsensor/settings.h>

G_BEGIN_DECLS

#define OTS_EXIT_CONFIG 78

#define OTS_CONFIG_ERROR (ots_config_error_quark())
GQuark ots_config_error_quark(void);

typedef enum {
    OTS_CONFIG_ERROR_SYNTAX,      /* libconfig parse error */
    OTS_CONFIG_ERROR_IO,          /* file cannot be read */
    OTS_CONFIG_ERROR_UNKNOWN_KEY, /* key not in the schema ("did you mean") */
    OTS_CONFIG_ERROR_TYPE,        /* wrong type */
    OTS_CONFIG_ERROR_RANGE,       /* out of range */
    OTS_CONFIG_ERROR_MISSING,     /* required key absent */
    OTS_CONFIG_ERROR_VALUE,       /* semantically invalid (bad enum value, ...) */
} OtsConfigError;

typedef struct _OtsConfig OtsConfig;

/* The core schema of otsensor.conf (see etc/otsensor.conf). */
const OtsSettingSpec *ots_config_core_schema(void);

/* Loads and validates against the core schema. Keys absent from the file
 * take their defaults from the embedded default configuration. Error
 * messages look like
 *   "otsensor.conf:12: flows.max_flows: 0 is out of range (1..16777216)". */
OtsConfig *ots_config_load_file(const char *path, GError **error);
OtsConfig *ots_config_load_string(const char *text, const char *name, GError **error);
/* The embedded defaults alone (otsensord -r FILE with no -c). Never fails. */
OtsConfig *ots_config_load_defaults(void);
void ots_config_free(OtsConfig *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(OtsConfig, ots_config_free)

/* File name given at load ("<defaults>" for the embedded ones). */
const char *ots_config_get_name(const OtsConfig *c);

/* The root group; lookups fall back to the embedded defaults for absent keys
 * (so "flows.max_flows" always answers). Paths use dots: "flows.max_flows". */
const OtsSettings *ots_config_get_root(const OtsConfig *c);

/* Validates one group against a spec table (used for plugin groups:
 * "dissectors.modbus", "transports.proxy"). @path is the group's key path,
 * for messages. */
gboolean ots_settings_validate(const OtsSettings *s, const OtsSettingSpec *spec, const char *path,
                               GError **error);

/* Names of the children of a MAP group ("dissectors"), for checking them
 * against the loaded plugins. (transfer container) */
GPtrArray *ots_settings_get_keys(const OtsSettings *s);

/* The dotted key paths whose values differ between @a and @b (defaults
 * included), walking @spec (NULL: the keys either side has); @path prefixes
 * them. Key paths only, never a value. (transfer full) (element-type utf8) */
GPtrArray *ots_settings_diff(const OtsSettings *a, const OtsSettings *b, const OtsSettingSpec *spec,
                             const char *path);

/* "did you mean": the candidate closest to @word within a small edit
 * distance, or NULL. */
const char *ots_config_suggest(const char *word, const char *const *candidates, guint n);

/* Builds a "file:line: path: message" error for a setting (for checks done
 * outside the schema, e.g. an unknown dissector name). */
void ots_settings_set_error(const OtsSettings *s, const char *key, const char *path, GError **error,
                            OtsConfigError code, const char *fmt, ...) G_GNUC_PRINTF(6, 7);

G_END_DECLS
