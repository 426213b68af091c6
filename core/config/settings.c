/* SPDX-License-Identifier: Apache-2.0 */

/* The read-only OtsSettings view of a loaded configuration. All nodes are
 * built at load time and never change, so any thread may read them at once.
 * A NULL OtsSettings is treated as an empty group: every lookup answers
 * "absent", which lets callers chain ots_settings_get_group() safely. */

#include <string.h>

#include "config-private.h"

static GPrivate location_key = G_PRIVATE_INIT(g_free);

static void
tree_build(config_setting_t *setting, const char *name, GPtrArray *nodes, guint depth)
{
    if (config_setting_is_group(setting)) {
        OtsSettings *node = g_new0(OtsSettings, 1);
        node->setting = setting;
        node->name = name;
        config_setting_set_hook(setting, node);
        g_ptr_array_add(nodes, node);
    }
    /* Arrays hold scalars only; the depth was checked at load, the bound here
     * only keeps the walk finite if that ever changes. */
    if ((!config_setting_is_group(setting) && !config_setting_is_list(setting)) ||
        depth >= OTS_CONFIG_MAX_DEPTH)
        return;
    int n = config_setting_length(setting);
    for (int i = 0; i < n; i++)
        tree_build(config_setting_get_elem(setting, (unsigned)i), name, nodes, depth + 1);
}

OtsSettings *
ots_settings_tree_build(config_setting_t *root, const char *name, GPtrArray *nodes)
{
    tree_build(root, name, nodes, 0);
    return config_setting_get_hook(root);
}

const OtsSettings *
ots_settings_node(const config_setting_t *setting)
{
    if (setting == NULL || !config_setting_is_group(setting))
        return NULL;
    return config_setting_get_hook(setting);
}

/* @name in @s, else in its fallbacks. */
static const config_setting_t *
lookup_member(const OtsSettings *s, const char *name, const OtsSettings **owner)
{
    for (const OtsSettings *n = s; n != NULL; n = n->fallback) {
        const config_setting_t *m = config_setting_get_member(n->setting, name);
        if (m != NULL) {
            if (owner)
                *owner = n;
            return m;
        }
    }
    return NULL;
}

/* One path component: "name" or "name[index]". Modifies @comp. */
static const config_setting_t *
lookup_component(const OtsSettings *s, char *comp, const OtsSettings **owner)
{
    char *bracket = strchr(comp, '[');
    guint64 index = 0;

    if (bracket != NULL) {
        char *end = NULL;
        size_t len = strlen(bracket);
        if (len < 3 || bracket[len - 1] != ']' || !g_ascii_isdigit(bracket[1]))
            return NULL;
        index = g_ascii_strtoull(bracket + 1, &end, 10);
        if (end != bracket + len - 1 || index > G_MAXINT)
            return NULL;
        *bracket = '\0';
    }
    if (*comp == '\0')
        return NULL;
    const config_setting_t *m = lookup_member(s, comp, owner);
    if (m == NULL || bracket == NULL)
        return m;
    if (!config_setting_is_list(m) && !config_setting_is_array(m))
        return NULL;
    if (index >= (guint64)config_setting_length(m))
        return NULL;
    return config_setting_get_elem(m, (unsigned)index);
}

const config_setting_t *
ots_settings_lookup(const OtsSettings *s, const char *key, const OtsSettings **owner)
{
    if (s == NULL || key == NULL)
        return NULL;
    if (strchr(key, '.') == NULL && strchr(key, '[') == NULL)
        return lookup_member(s, key, owner);

    g_autofree char *copy = g_strdup(key);
    char *comp = copy;
    for (;;) {
        char *dot = strchr(comp, '.');
        if (dot == NULL)
            return lookup_component(s, comp, owner);
        *dot = '\0';
        const config_setting_t *m = lookup_component(s, comp, NULL);
        s = ots_settings_node(m);
        if (s == NULL)
            return NULL;
        comp = dot + 1;
    }
}

/**
 * ots_settings_get_string:
 * @s: (nullable): a settings group
 * @key: a key or a dotted path ("flows.max_flows", "capture.interfaces[0].name")
 * @value: (out) (transfer none): the value, valid as long as @s
 *
 * Returns: %TRUE if @key is set (in the file or the defaults) and is a string.
 */
gboolean
ots_settings_get_string(const OtsSettings *s, const char *key, const char **value)
{
    const config_setting_t *m = ots_settings_lookup(s, key, NULL);
    if (m == NULL || config_setting_type(m) != CONFIG_TYPE_STRING)
        return FALSE;
    if (value)
        *value = config_setting_get_string(m);
    return TRUE;
}

static gboolean
setting_is_int(const config_setting_t *m)
{
    return m != NULL && (config_setting_type(m) == CONFIG_TYPE_INT ||
                         config_setting_type(m) == CONFIG_TYPE_INT64);
}

/**
 * ots_settings_get_int:
 * @s: (nullable): a settings group
 * @key: a key or a dotted path
 * @value: (out): the value
 *
 * Returns: %TRUE if @key is set and is an integer (32- or 64-bit).
 */
gboolean
ots_settings_get_int(const OtsSettings *s, const char *key, gint64 *value)
{
    const config_setting_t *m = ots_settings_lookup(s, key, NULL);
    if (!setting_is_int(m))
        return FALSE;
    if (value)
        *value = config_setting_get_int64(m);
    return TRUE;
}

/**
 * ots_settings_get_bool:
 * @s: (nullable): a settings group
 * @key: a key or a dotted path
 * @value: (out): the value
 *
 * Returns: %TRUE if @key is set and is a boolean.
 */
gboolean
ots_settings_get_bool(const OtsSettings *s, const char *key, gboolean *value)
{
    const config_setting_t *m = ots_settings_lookup(s, key, NULL);
    if (m == NULL || config_setting_type(m) != CONFIG_TYPE_BOOL)
        return FALSE;
    if (value)
        *value = config_setting_get_bool(m) ? TRUE : FALSE;
    return TRUE;
}

/**
 * ots_settings_get_float:
 * @s: (nullable): a settings group
 * @key: a key or a dotted path
 * @value: (out): the value
 *
 * Returns: %TRUE if @key is set and is a number (integers are converted).
 */
gboolean
ots_settings_get_float(const OtsSettings *s, const char *key, double *value)
{
    const config_setting_t *m = ots_settings_lookup(s, key, NULL);
    if (m == NULL)
        return FALSE;
    if (config_setting_type(m) == CONFIG_TYPE_FLOAT) {
        if (value)
            *value = config_setting_get_float(m);
        return TRUE;
    }
    if (setting_is_int(m)) {
        if (value)
            *value = (double)config_setting_get_int64(m);
        return TRUE;
    }
    return FALSE;
}

/**
 * ots_settings_get_group:
 * @s: (nullable): a settings group
 * @key: a key or a dotted path
 *
 * A group the file does not set comes from the defaults; a group it sets
 * answers the keys it leaves out from the defaults too, except the groups
 * of a list or a map (their content replaces the defaults').
 *
 * Returns: (transfer none) (nullable): the nested group, valid as long as @s.
 */
const OtsSettings *
ots_settings_get_group(const OtsSettings *s, const char *key)
{
    return ots_settings_node(ots_settings_lookup(s, key, NULL));
}

/**
 * ots_settings_get_length:
 * @s: (nullable): a settings group
 * @key: a key or a dotted path
 *
 * Returns: the number of elements of the list or array @key, 0 when absent.
 */
guint
ots_settings_get_length(const OtsSettings *s, const char *key)
{
    const config_setting_t *m = ots_settings_lookup(s, key, NULL);
    if (m == NULL || (!config_setting_is_list(m) && !config_setting_is_array(m)))
        return 0;
    return (guint)config_setting_length(m);
}

static const config_setting_t *
lookup_element(const OtsSettings *s, const char *key, guint i)
{
    const config_setting_t *m = ots_settings_lookup(s, key, NULL);
    if (m == NULL || (!config_setting_is_list(m) && !config_setting_is_array(m)))
        return NULL;
    if (i >= (guint)config_setting_length(m))
        return NULL;
    return config_setting_get_elem(m, i);
}

/**
 * ots_settings_get_element:
 * @s: (nullable): a settings group
 * @key: a key or a dotted path naming a list of groups
 * @i: the index
 *
 * Keys an element leaves out answer from the per-element defaults (see
 * docs/configuration.md), not from the default list's elements.
 *
 * Returns: (transfer none) (nullable): element @i, or NULL if absent or not a group.
 */
const OtsSettings *
ots_settings_get_element(const OtsSettings *s, const char *key, guint i)
{
    return ots_settings_node(lookup_element(s, key, i));
}

/**
 * ots_settings_get_string_element:
 * @s: (nullable): a settings group
 * @key: a key or a dotted path naming an array or a list
 * @i: the index
 *
 * Returns: (transfer none) (nullable): element @i if it is a string, else NULL.
 */
const char *
ots_settings_get_string_element(const OtsSettings *s, const char *key, guint i)
{
    const config_setting_t *e = lookup_element(s, key, i);
    if (e == NULL || config_setting_type(e) != CONFIG_TYPE_STRING)
        return NULL;
    return config_setting_get_string(e);
}

/**
 * ots_settings_get_int_element:
 * @s: (nullable): a settings group
 * @key: a key or a dotted path naming an array or a list
 * @i: the index
 *
 * Returns: element @i if it is an integer, else 0.
 */
gint64
ots_settings_get_int_element(const OtsSettings *s, const char *key, guint i)
{
    const config_setting_t *e = lookup_element(s, key, i);
    if (!setting_is_int(e))
        return 0;
    return config_setting_get_int64(e);
}

/**
 * ots_settings_get_location:
 * @s: (nullable): a settings group
 * @key: (nullable): a key or a dotted path; NULL for the group itself
 *
 * Where @key is set: "file:line" ("<defaults>:line" for a default). Also a
 * presence test: an empty array and an absent one both have length 0.
 *
 * Returns: (transfer none) (nullable): the location, NULL when @key is not
 * set (nor @s given); valid in the calling thread until its next call.
 */
const char *
ots_settings_get_location(const OtsSettings *s, const char *key)
{
    if (s == NULL)
        return NULL;
    const OtsSettings *owner = s;
    const config_setting_t *m = s->setting;
    if (key != NULL && (m = ots_settings_lookup(s, key, &owner)) == NULL)
        return NULL;
    char *loc = ots_config_setting_location(m, owner->name);
    g_private_replace(&location_key, loc);
    return loc;
}

/**
 * ots_settings_get_keys:
 * @s: (nullable): a settings group
 *
 * Names of the keys of @s in file order, followed by those only its
 * defaults set. For a map ("dissectors", "transports") these are exactly
 * the names the file (or, if it has no such map, the defaults) gives.
 *
 * Returns: (transfer container) (element-type utf8): the names, borrowed
 * from @s.
 */
GPtrArray *
ots_settings_get_keys(const OtsSettings *s)
{
    GPtrArray *keys = g_ptr_array_new();

    for (const OtsSettings *n = s; n != NULL; n = n->fallback) {
        int len = config_setting_length(n->setting);
        for (int i = 0; i < len; i++) {
            const char *name =
                config_setting_name(config_setting_get_elem(n->setting, (unsigned)i));
            gboolean seen = FALSE;
            if (name == NULL)
                continue;
            for (guint k = 0; k < keys->len && !seen; k++)
                seen = strcmp(g_ptr_array_index(keys, k), name) == 0;
            if (!seen)
                g_ptr_array_add(keys, (gpointer)name);
        }
    }
    return keys;
}
