/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/**
 * SECTION:settings
 * @title: Plugin settings
 *
 * A plugin declares the keys of its config group as a table of
 * #OtsSettingSpec; the core validates the group against it (type, range,
 * required, unknown keys with a "did you mean" hint, with file and line)
 * before the plugin sees it, then hands the plugin a read-only #OtsSettings.
 */

#include <glib.h>

G_BEGIN_DECLS

typedef struct _OtsSettings OtsSettings;

typedef enum {
    OTS_SETTING_END = 0, /* terminates a spec table */
    OTS_SETTING_STRING,
    OTS_SETTING_INT,    /* 64-bit integer, checked against min/max when max > min */
    OTS_SETTING_BOOL,
    OTS_SETTING_FLOAT,
    OTS_SETTING_GROUP,  /* nested group validated against @children */
    OTS_SETTING_LIST,   /* list of groups, each validated against @children */
    OTS_SETTING_STRING_ARRAY,
    OTS_SETTING_INT_ARRAY,
    OTS_SETTING_MAP,    /* group whose keys are free names (plugin names), each a group
                           validated against @children (NULL: validated later) */
} OtsSettingType;

typedef struct _OtsSettingSpec OtsSettingSpec;

struct _OtsSettingSpec {
    const char *name;
    OtsSettingType type;
    gboolean required;
    gint64 min;
    gint64 max;
    const OtsSettingSpec *children;
    const char *help;
    /* Secret values (passwords, token paths' contents) are never logged or shown. */
    gboolean secret;
    /* STRING: NULL-terminated list of the allowed values, or NULL for any. */
    const char *const *choices;
    gpointer reserved[2];
};

/* Lookups: %FALSE when the key is absent (values are validated already). */
gboolean ots_settings_get_string(const OtsSettings *s, const char *key, const char **value);
gboolean ots_settings_get_int(const OtsSettings *s, const char *key, gint64 *value);
gboolean ots_settings_get_bool(const OtsSettings *s, const char *key, gboolean *value);
gboolean ots_settings_get_float(const OtsSettings *s, const char *key, double *value);
/* A nested group, or NULL. Borrowed, valid as long as @s. */
const OtsSettings *ots_settings_get_group(const OtsSettings *s, const char *key);
/* Length of a list or array setting (0 when absent). */
guint ots_settings_get_length(const OtsSettings *s, const char *key);
/* Element @i of a list of groups. */
const OtsSettings *ots_settings_get_element(const OtsSettings *s, const char *key, guint i);
const char *ots_settings_get_string_element(const OtsSettings *s, const char *key, guint i);
gint64 ots_settings_get_int_element(const OtsSettings *s, const char *key, guint i);
/* "file:line" of the setting, for error messages (static buffer per thread). */
const char *ots_settings_get_location(const OtsSettings *s, const char *key);

G_END_DECLS
