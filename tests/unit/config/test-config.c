/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for core/config: each kind of validation error with its exact
 * "file:line: path: message", the embedded defaults (valid, complete, in step
 * with etc/otsensor.conf), fallback to the defaults, dotted paths, plugin
 * group validation and the "did you mean" helper. Files are written with
 * g_file_open_tmp() so the line numbers are those of real files. */

#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "core/config/config-private.h"

/* Every test file starts with this line, so line 2 is the first one a test
 * writes. */
#define SENSOR "sensor: { id = \"test-1\"; };\n"

#ifndef OTS_DEFAULT_SOURCE_ROOT
#define OTS_DEFAULT_SOURCE_ROOT "."
#endif

static char *
write_tmp(const char *text)
{
    GError *err = NULL;
    char *path = NULL;
    int fd = g_file_open_tmp("ots-config-XXXXXX.conf", &path, &err);
    CU_ASSERT_FATAL(fd >= 0);
    g_close(fd, NULL);
    CU_ASSERT_FATAL(g_file_set_contents(path, text, -1, &err));
    return path;
}

/* @expected with each "FILE" replaced by @path. */
static char *
expand(const char *expected, const char *path)
{
    g_auto(GStrv) parts = g_strsplit(expected, "FILE", -1);
    return g_strjoinv(path, parts);
}

static void
check_message(const char *got, const char *want)
{
    if (strcmp(got, want) != 0)
        fprintf(stderr, "\n  got:  %s\n  want: %s\n", got, want);
    CU_ASSERT_STRING_EQUAL(got, want);
}

/* Loads @text from a file; the load must fail with @code and exactly
 * @expected ("FILE" standing for the file's path). */
static void
expect_error(const char *text, OtsConfigError code, const char *expected)
{
    GError *err = NULL;
    char *path = write_tmp(text);
    OtsConfig *c = ots_config_load_file(path, &err);

    CU_ASSERT_PTR_NULL(c);
    ots_config_free(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(err);
    CU_ASSERT_EQUAL(err->domain, OTS_CONFIG_ERROR);
    if (err->code != (int)code)
        fprintf(stderr, "\n  code %d, want %d (%s)\n", err->code, code, err->message);
    CU_ASSERT_EQUAL(err->code, (int)code);
    g_autofree char *want = expand(expected, path);
    check_message(err->message, want);
    g_error_free(err);
    g_unlink(path);
    g_free(path);
}

/* Loads @text from a file; the load must succeed. The file is removed. */
static OtsConfig *
expect_ok(const char *text)
{
    GError *err = NULL;
    char *path = write_tmp(text);
    OtsConfig *c = ots_config_load_file(path, &err);

    if (err != NULL)
        fprintf(stderr, "\n  unexpected error: %s\n", err->message);
    CU_ASSERT_PTR_NULL(err);
    g_clear_error(&err);
    g_unlink(path);
    g_free(path);
    return c;
}

static char *
etc_path(void)
{
    const char *root = g_getenv("OTS_SOURCE_ROOT");
    return g_build_filename(root ? root : OTS_DEFAULT_SOURCE_ROOT, "etc", "otsensor.conf", NULL);
}

/* ---- each kind of error ------------------------------------------------ */

static void
test_type_error(void)
{
    expect_error(SENSOR "flows: {\n  max_flows = \"big\";\n};\n", OTS_CONFIG_ERROR_TYPE,
                 "FILE:3: flows.max_flows: expected an integer, got a string");
    expect_error(SENSOR "flows: {\n\n  max_flows = 1.5;\n};\n", OTS_CONFIG_ERROR_TYPE,
                 "FILE:4: flows.max_flows: expected an integer, got a float");
    expect_error(SENSOR "flows: { flow_events = \"yes\"; };\n", OTS_CONFIG_ERROR_TYPE,
                 "FILE:2: flows.flow_events: expected a boolean, got a string");
    expect_error(SENSOR "flows = 3;\n", OTS_CONFIG_ERROR_TYPE,
                 "FILE:2: flows: expected a group, got an integer");
    expect_error("sensor: { id = 12; };\n", OTS_CONFIG_ERROR_TYPE,
                 "FILE:1: sensor.id: expected a string, got an integer");
    expect_error(SENSOR "dissectors: { modbus: { tcp_ports = 502; }; };\n", OTS_CONFIG_ERROR_TYPE,
                 "FILE:2: dissectors.modbus.tcp_ports: expected an array of integers, "
                 "got an integer");
    expect_error(SENSOR "dissectors: {\n  modbus = true;\n};\n", OTS_CONFIG_ERROR_TYPE,
                 "FILE:3: dissectors.modbus: expected a group, got a boolean");
}

static void
test_range_error(void)
{
    expect_error(SENSOR "flows: {\n  max_flows = 0;\n};\n", OTS_CONFIG_ERROR_RANGE,
                 "FILE:3: flows.max_flows: 0 is out of range (1..16777216)");
    expect_error(SENSOR "output: { heartbeat_interval = -1; };\n", OTS_CONFIG_ERROR_RANGE,
                 "FILE:2: output.heartbeat_interval: -1 is out of range (0..86400)");
    /* 64-bit integers are accepted and range-checked. */
    expect_error(SENSOR "flows: { max_flows = 100000000000L; };\n", OTS_CONFIG_ERROR_RANGE,
                 "FILE:2: flows.max_flows: 100000000000 is out of range (1..16777216)");
    OtsConfig *c = expect_ok(SENSOR "flows: { max_flows = 5L; };\n");
    gint64 v = 0;
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_TRUE(ots_settings_get_int(ots_config_get_root(c), "flows.max_flows", &v));
    CU_ASSERT_EQUAL(v, 5);
    ots_config_free(c);
    /* Bounds are inclusive. */
    c = expect_ok(SENSOR "flows: { max_flows = 16777216; max_ooo_bytes = 0; };\n");
    CU_ASSERT_PTR_NOT_NULL(c);
    ots_config_free(c);
}

/* libconfig 1.5 reads 4294967301 (no L) as 5: such literals are refused. */
static void
test_truncated_integer(void)
{
    expect_error(SENSOR "flows: {\n  max_flows = 4294967301;\n};\n", OTS_CONFIG_ERROR_RANGE,
                 "FILE:3: flows.max_flows: 4294967301 does not fit in 32 bits "
                 "(write 4294967301L for a 64-bit integer)");
    expect_error(SENSOR "flows: { max_ooo_bytes = 0x100000000; };\n", OTS_CONFIG_ERROR_RANGE,
                 "FILE:2: flows.max_ooo_bytes: 4294967296 does not fit in 32 bits "
                 "(write 4294967296L for a 64-bit integer)");
    /* Also in groups that only a plugin will validate. */
    expect_error(SENSOR "transports: {\n  local: { path = \"-\";\n    limit = 3000000000; };\n};\n",
                 OTS_CONFIG_ERROR_RANGE,
                 "FILE:4: transports.local.limit: 3000000000 does not fit in 32 bits "
                 "(write 3000000000L for a 64-bit integer)");
    /* Comments and strings holding big numbers are not values. */
    OtsConfig *c = expect_ok(
        SENSOR "# 99999999999\nflows: { max_flows = 7; }; /* 88888888888 */\n"
               "transports: { local: { path = \"77777777777\"; big = 3000000000L; }; };\n");
    CU_ASSERT_PTR_NOT_NULL(c);
    ots_config_free(c);
}

static void
test_unknown_key(void)
{
    expect_error(SENSOR "flows: {\n  max_flows = 10;\n  max_flow = 10;\n};\n",
                 OTS_CONFIG_ERROR_UNKNOWN_KEY,
                 "FILE:4: flows.max_flow: unknown setting (did you mean 'max_flows'?)");
    expect_error(SENSOR "flow: { };\n", OTS_CONFIG_ERROR_UNKNOWN_KEY,
                 "FILE:2: flow: unknown setting (did you mean 'flows'?)");
    expect_error(SENSOR "flows: { tcp_idle_timout = 5; };\n", OTS_CONFIG_ERROR_UNKNOWN_KEY,
                 "FILE:2: flows.tcp_idle_timout: unknown setting (did you mean "
                 "'tcp_idle_timeout'?)");
    expect_error("sensor: {\n  id = \"a\";\n  colour = \"red\";\n};\n",
                 OTS_CONFIG_ERROR_UNKNOWN_KEY,
                 "FILE:3: sensor.colour: unknown setting (expected one of: id, site, "
                 "state_dir, user)");
    expect_error(SENSOR "dissectors: { modbus: { enabeld = false; }; };\n",
                 OTS_CONFIG_ERROR_UNKNOWN_KEY,
                 "FILE:2: dissectors.modbus.enabeld: unknown setting (did you mean 'enabled'?)");
}

static const OtsSettingSpec tls_spec[] = {
    {.name = "ca_file", .type = OTS_SETTING_STRING, .required = TRUE},
    {.name = "pin", .type = OTS_SETTING_STRING},
    {NULL},
};

static const OtsSettingSpec needs_tls_spec[] = {
    {.name = "path", .type = OTS_SETTING_STRING},
    {.name = "tls", .type = OTS_SETTING_GROUP, .required = TRUE, .children = tls_spec},
    {NULL},
};

static void
test_missing_required(void)
{
    /* sensor.id is required, and the defaults supply it. */
    OtsConfig *c = expect_ok("\nsensor: {\n  site = \"x\";\n};\n");
    const char *s = NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_TRUE(ots_settings_get_string(ots_config_get_root(c), "sensor.id", &s));
    CU_ASSERT_STRING_EQUAL(s, "otsensor-lab");
    ots_config_free(c);

    /* Nothing supplies a list element's required key. */
    expect_error(SENSOR "capture: {\n  interfaces = (\n    { name = \"eth0\"; },\n"
                        "    { snaplen = 100; }\n  );\n};\n",
                 OTS_CONFIG_ERROR_MISSING,
                 "FILE:5: capture.interfaces[1].name: required setting is missing");

    /* Through ots_settings_validate(): a required group, a required key. */
    GError *err = NULL;
    char *path = write_tmp(SENSOR "transports: {\n  local: {\n    path = \"-\";\n  };\n};\n");
    c = ots_config_load_file(path, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    const OtsSettings *local = ots_settings_get_group(ots_config_get_root(c), "transports.local");
    CU_ASSERT_FALSE(ots_settings_validate(local, needs_tls_spec, "transports.local", &err));
    CU_ASSERT_TRUE(g_error_matches(err, OTS_CONFIG_ERROR, OTS_CONFIG_ERROR_MISSING));
    g_autofree char *want = expand(
        "FILE:3: transports.local.tls: required group is missing (it must set: ca_file)", path);
    if (err != NULL)
        check_message(err->message, want);
    g_clear_error(&err);
    /* The core groups: their defaults count. */
    CU_ASSERT_TRUE(
        ots_settings_validate(ots_config_get_root(c), ots_config_core_schema(), "", &err));
    CU_ASSERT_PTR_NULL(err);
    g_clear_error(&err);
    ots_config_free(c);
    g_unlink(path);
    g_free(path);
}

static void
test_choices(void)
{
    expect_error(SENSOR "logging: {\n  level = \"verbose\";\n};\n", OTS_CONFIG_ERROR_VALUE,
                 "FILE:3: logging.level: 'verbose' is not one of: error, critical, warning, "
                 "message, info, debug");
    expect_error(SENSOR "logging: { level = \"mesage\"; };\n", OTS_CONFIG_ERROR_VALUE,
                 "FILE:2: logging.level: 'mesage' is not one of: error, critical, warning, "
                 "message, info, debug (did you mean 'message'?)");
    expect_error(SENSOR "logging: { modules: {\n  flow = \"debug\";\n  capture = \"loud\"; }; };\n",
                 OTS_CONFIG_ERROR_VALUE,
                 "FILE:4: logging.modules.capture: 'loud' is not one of: error, critical, "
                 "warning, message, info, debug");
    expect_error(SENSOR "logging: { modules: { flow = 7; }; };\n", OTS_CONFIG_ERROR_TYPE,
                 "FILE:2: logging.modules.flow: expected a string, got an integer");
    OtsConfig *c = expect_ok(SENSOR "logging: { level = \"debug\"; modules: { flow = \"info\"; "
                                    "dissector_modbus = \"debug\"; }; };\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    const char *s = NULL;
    CU_ASSERT_TRUE(ots_settings_get_string(ots_config_get_root(c), "logging.modules.flow", &s));
    CU_ASSERT_STRING_EQUAL(s, "info");
    g_autoptr(GPtrArray) keys =
        ots_settings_get_keys(ots_settings_get_group(ots_config_get_root(c), "logging.modules"));
    CU_ASSERT_EQUAL_FATAL(keys->len, 2);
    CU_ASSERT_STRING_EQUAL(g_ptr_array_index(keys, 0), "flow");
    CU_ASSERT_STRING_EQUAL(g_ptr_array_index(keys, 1), "dissector_modbus");
    ots_config_free(c);
}

static void
test_array_element(void)
{
    expect_error(SENSOR "dissectors: {\n  modbus: {\n    tcp_ports = [ 502,\n      70000 ];\n"
                        "  };\n};\n",
                 OTS_CONFIG_ERROR_RANGE,
                 "FILE:5: dissectors.modbus.tcp_ports[1]: 70000 is out of range (1..65535)");
    expect_error(SENSOR "dissectors: { modbus: { udp_ports = [ 0 ]; }; };\n",
                 OTS_CONFIG_ERROR_RANGE,
                 "FILE:2: dissectors.modbus.udp_ports[0]: 0 is out of range (1..65535)");
    /* libconfig arrays are homogeneous; lists are accepted as arrays. */
    expect_error(SENSOR "plugins: { paths = ( \"/a\", 3 ); };\n", OTS_CONFIG_ERROR_TYPE,
                 "FILE:2: plugins.paths[1]: expected a string, got an integer");
    expect_error(SENSOR "plugins: { disable = [ \"\" ]; };\n", OTS_CONFIG_ERROR_RANGE,
                 "FILE:2: plugins.disable[0]: must not be empty");
    OtsConfig *c = expect_ok(SENSOR "plugins: { paths = ( \"/a\", \"/b\" ); };\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(ots_settings_get_length(ots_config_get_root(c), "plugins.paths"), 2);
    CU_ASSERT_STRING_EQUAL(
        ots_settings_get_string_element(ots_config_get_root(c), "plugins.paths", 1), "/b");
    ots_config_free(c);
}

static void
test_list_element(void)
{
    expect_error(SENSOR "capture: {\n  interfaces = ( {\n    name = \"eth0\";\n"
                        "    snaplen = 10;\n  } );\n};\n",
                 OTS_CONFIG_ERROR_RANGE,
                 "FILE:5: capture.interfaces[0].snaplen: 10 is out of range (64..262144)");
    expect_error(SENSOR "capture: { interfaces = ( \"eth0\" ); };\n", OTS_CONFIG_ERROR_TYPE,
                 "FILE:2: capture.interfaces[0]: expected a group, got a string");
    expect_error(SENSOR "capture: { interfaces = \"eth0\"; };\n", OTS_CONFIG_ERROR_TYPE,
                 "FILE:2: capture.interfaces: expected a list of groups, got a string");
    expect_error(SENSOR "capture: { interfaces = ( { name = \"eth0\"; promisc = true; } ); };\n",
                 OTS_CONFIG_ERROR_UNKNOWN_KEY,
                 "FILE:2: capture.interfaces[0].promisc: unknown setting (did you mean "
                 "'promiscuous'?)");
    expect_error(SENSOR "capture: { interfaces = ( { name = \"eth0\"; },\n"
                        "  { name = \"eth0\"; } ); };\n",
                 OTS_CONFIG_ERROR_VALUE,
                 "FILE:3: capture.interfaces[1].name: interface 'eth0' is already listed as "
                 "capture.interfaces[0]");
    /* "[]" is taken as an empty list. */
    OtsConfig *c = expect_ok(SENSOR "capture: { interfaces = [ ]; };\n");
    CU_ASSERT_PTR_NOT_NULL(c);
    ots_config_free(c);
}

static void
test_string_checks(void)
{
    expect_error("sensor: { id = \"\"; };\n", OTS_CONFIG_ERROR_RANGE,
                 "FILE:1: sensor.id: must not be empty");
    expect_error("sensor: {\n  id = \"plant 4\";\n};\n", OTS_CONFIG_ERROR_VALUE,
                 "FILE:2: sensor.id: 'plant 4' may only hold the characters A-Z a-z 0-9 . _ -");
    expect_error("sensor: { id = \"x\\n\"; };\n", OTS_CONFIG_ERROR_VALUE,
                 "FILE:1: sensor.id: 'x\\n' may only hold the characters A-Z a-z 0-9 . _ -");
    g_autofree char *longid = g_strnfill(65, 'a');
    g_autofree char *text = g_strdup_printf("sensor: { id = \"%s\"; };\n", longid);
    expect_error(text, OTS_CONFIG_ERROR_RANGE,
                 "FILE:1: sensor.id: length 65 is out of range (1..64 characters)");
    expect_error(SENSOR "sensor2: { };\n", OTS_CONFIG_ERROR_UNKNOWN_KEY,
                 "FILE:2: sensor2: unknown setting (did you mean 'sensor'?)");
    expect_error("sensor: { id = \"a\"; site = \"\xff\"; };\n", OTS_CONFIG_ERROR_VALUE,
                 "FILE:1: sensor.site: the string is not valid UTF-8");
    OtsConfig *c = expect_ok("sensor: { id = \"A.b_c-9\"; site = \"Usine d'Évry\"; };\n");
    CU_ASSERT_PTR_NOT_NULL(c);
    ots_config_free(c);
}

static void
test_syntax_error(void)
{
    expect_error(SENSOR "flows: {\n  max_flows = ;\n};\n", OTS_CONFIG_ERROR_SYNTAX,
                 "FILE:3: syntax error");
    /* An unclosed group: libconfig's line is that of the end of the file. */
    expect_error(SENSOR "flows: {\n  max_flows = 1;\n\n\n", OTS_CONFIG_ERROR_SYNTAX,
                 "FILE:6: syntax error");
    expect_error(SENSOR "flows: { max_flows = 1; };\nflows: { max_flows = 2; };\n",
                 OTS_CONFIG_ERROR_SYNTAX, "FILE:3: duplicate setting name");

    GError *err = NULL;
    OtsConfig *c = ots_config_load_string(SENSOR "flows: {\n", "inline", &err);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(err);
    CU_ASSERT_EQUAL(err->code, OTS_CONFIG_ERROR_SYNTAX);
    CU_ASSERT_TRUE(g_str_has_prefix(err->message, "inline:"));
    g_clear_error(&err);

    /* A NUL byte ends libconfig's input early: refused with its line. */
    char *path = NULL;
    int fd = g_file_open_tmp("ots-config-XXXXXX.conf", &path, NULL);
    CU_ASSERT_FATAL(fd >= 0);
    g_close(fd, NULL);
    static const char nul_text[] = SENSOR "\nflows: { }; \0 flows: 3;\n";
    CU_ASSERT_TRUE(g_file_set_contents(path, nul_text, sizeof(nul_text) - 1, NULL));
    c = ots_config_load_file(path, &err);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(err);
    CU_ASSERT_EQUAL(err->code, OTS_CONFIG_ERROR_SYNTAX);
    g_autofree char *want = g_strdup_printf("%s:3: NUL byte in the text", path);
    check_message(err->message, want);
    g_clear_error(&err);
    g_unlink(path);
    g_free(path);
}

static void
test_io_error(void)
{
    GError *err = NULL;
    OtsConfig *c = ots_config_load_file("/nonexistent/otsensor.conf", &err);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(err);
    CU_ASSERT_TRUE(g_error_matches(err, OTS_CONFIG_ERROR, OTS_CONFIG_ERROR_IO));
    CU_ASSERT_TRUE(g_str_has_prefix(err->message, "/nonexistent/otsensor.conf: cannot open: "));
    g_clear_error(&err);

    g_autofree char *dir = g_dir_make_tmp("ots-config-XXXXXX", NULL);
    c = ots_config_load_file(dir, &err);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_TRUE(g_error_matches(err, OTS_CONFIG_ERROR, OTS_CONFIG_ERROR_IO));
    g_clear_error(&err);
    g_rmdir(dir);
}

static void
test_first_error_in_file_order(void)
{
    /* Line 3 comes before line 6, whatever the schema's order. */
    expect_error(SENSOR "flows: {\n  max_flows = 0;\n};\nsensor2: { };\nlogging: {\n"
                        "  level = \"x\";\n};\n",
                 OTS_CONFIG_ERROR_RANGE,
                 "FILE:3: flows.max_flows: 0 is out of range (1..16777216)");
    expect_error("logging: {\n  level = \"x\";\n};\nsensor: { id = 3; };\n", OTS_CONFIG_ERROR_VALUE,
                 "FILE:2: logging.level: 'x' is not one of: error, critical, warning, message, "
                 "info, debug");
    /* A missing key is reported after the errors inside its group. */
    expect_error("sensor: {\n  site = 1;\n};\n", OTS_CONFIG_ERROR_TYPE,
                 "FILE:2: sensor.site: expected a string, got an integer");
}

static void
test_include(void)
{
    GError *err = NULL;
    g_autofree char *dir = g_dir_make_tmp("ots-config-XXXXXX", NULL);
    g_autofree char *main_path = g_build_filename(dir, "main.conf", NULL);
    g_autofree char *part_path = g_build_filename(dir, "flows.conf", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);

    CU_ASSERT_TRUE(g_file_set_contents(main_path, SENSOR "@include \"flows.conf\"\n", -1, NULL));
    CU_ASSERT_TRUE(g_file_set_contents(part_path, "flows: {\n  max_flows = 42;\n};\n", -1, NULL));
    OtsConfig *c = ots_config_load_file(main_path, &err);
    CU_ASSERT_PTR_NULL(err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    gint64 v = 0;
    CU_ASSERT_TRUE(ots_settings_get_int(ots_config_get_root(c), "flows.max_flows", &v));
    CU_ASSERT_EQUAL(v, 42);
    g_autofree char *loc = g_strdup_printf("%s:2", part_path);
    CU_ASSERT_STRING_EQUAL(ots_settings_get_location(ots_config_get_root(c), "flows.max_flows"),
                           loc);
    ots_config_free(c);

    /* Errors in an included file name that file. */
    CU_ASSERT_TRUE(g_file_set_contents(part_path, "flows: {\n\n  max_flows = -3;\n};\n", -1, NULL));
    c = ots_config_load_file(main_path, &err);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(err);
    g_autofree char *want =
        g_strdup_printf("%s:3: flows.max_flows: -3 is out of range (1..16777216)", part_path);
    check_message(err->message, want);
    g_clear_error(&err);

    CU_ASSERT_TRUE(
        g_file_set_contents(part_path, "flows: {\n  max_flows = 3000000000;\n};\n", -1, NULL));
    c = ots_config_load_file(main_path, &err);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_TRUE(g_error_matches(err, OTS_CONFIG_ERROR, OTS_CONFIG_ERROR_RANGE));
    g_clear_error(&err);

    CU_ASSERT_TRUE(g_file_set_contents(part_path, "flows: {\n  max_flows 3;\n};\n", -1, NULL));
    c = ots_config_load_file(main_path, &err);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(err);
    g_free(want);
    want = g_strdup_printf("%s:2: syntax error", part_path);
    check_message(err->message, want);
    g_clear_error(&err);

    g_unlink(part_path);
    c = ots_config_load_file(main_path, &err);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_TRUE(g_error_matches(err, OTS_CONFIG_ERROR, OTS_CONFIG_ERROR_SYNTAX));
    g_free(want);
    want = g_strdup_printf("%s:2: cannot open include file", main_path);
    check_message(err->message, want);
    g_clear_error(&err);

    g_unlink(main_path);
    g_rmdir(dir);
}

static void
test_nesting_depth(void)
{
    GString *deep = g_string_new(SENSOR "transports: { local: { path = \"-\"; }; x: {");
    for (int i = 0; i < 40; i++)
        g_string_append(deep, " y: {");
    for (int i = 0; i < 41; i++)
        g_string_append(deep, " };");
    g_string_append(deep, " };\n");
    GError *err = NULL;
    OtsConfig *c = ots_config_load_string(deep->str, "deep", &err);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_TRUE(g_error_matches(err, OTS_CONFIG_ERROR, OTS_CONFIG_ERROR_VALUE));
    CU_ASSERT_PTR_NOT_NULL(err ? strstr(err->message, "nested more than 32 levels deep") : NULL);
    g_clear_error(&err);
    g_string_free(deep, TRUE);

    /* Far deeper lists: an error, not a crash. */
    GString *lists = g_string_new(SENSOR "transports: { local: { path = \"-\"; l = ");
    for (int i = 0; i < 5000; i++)
        g_string_append_c(lists, '(');
    for (int i = 0; i < 5000; i++)
        g_string_append_c(lists, ')');
    g_string_append(lists, "; }; };\n");
    c = ots_config_load_string(lists->str, "lists", &err);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_PTR_NOT_NULL(err);
    g_clear_error(&err);
    g_string_free(lists, TRUE);
}

/* ---- defaults ---------------------------------------------------------- */

/* Every key of @spec answers in @s (lists and maps: present). */
static void
check_complete(const OtsSettings *s, const OtsSettingSpec *spec, const char *path)
{
    for (; spec->name != NULL; spec++) {
        g_autofree char *p = ots_config_join_path(path, spec->name);
        const OtsSettings *owner = NULL;
        const config_setting_t *m = ots_settings_lookup(s, spec->name, &owner);
        if (m == NULL)
            fprintf(stderr, "\n  no value for %s\n", p);
        CU_ASSERT_PTR_NOT_NULL(m);
        switch (spec->type) {
        case OTS_SETTING_STRING:
            CU_ASSERT_TRUE(ots_settings_get_string(s, spec->name, NULL));
            break;
        case OTS_SETTING_INT:
            CU_ASSERT_TRUE(ots_settings_get_int(s, spec->name, NULL));
            break;
        case OTS_SETTING_BOOL:
            CU_ASSERT_TRUE(ots_settings_get_bool(s, spec->name, NULL));
            break;
        case OTS_SETTING_GROUP: {
            const OtsSettings *g = ots_settings_get_group(s, spec->name);
            CU_ASSERT_PTR_NOT_NULL(g);
            if (g != NULL && spec->children != NULL)
                check_complete(g, spec->children, p);
            break;
        }
        case OTS_SETTING_MAP: {
            const OtsSettings *g = ots_settings_get_group(s, spec->name);
            CU_ASSERT_PTR_NOT_NULL_FATAL(g);
            g_autoptr(GPtrArray) keys = ots_settings_get_keys(g);
            CU_ASSERT_TRUE(keys->len > 0);
            for (guint i = 0; i < keys->len && spec->children != NULL; i++) {
                const char *k = g_ptr_array_index(keys, i);
                g_autofree char *kp = ots_config_join_path(p, k);
                check_complete(ots_settings_get_group(g, k), spec->children, kp);
            }
            break;
        }
        default:
            break;
        }
    }
}

static const OtsSettingSpec *
schema_entry(const OtsSettingSpec *table, const char *name)
{
    for (; table->name != NULL; table++)
        if (strcmp(table->name, name) == 0)
            return table;
    return NULL;
}

static void
test_defaults_valid_and_complete(void)
{
    GError *err = NULL;
    g_autoptr(OtsConfig) c = ots_config_load_defaults();
    const OtsSettings *root = ots_config_get_root(c);

    CU_ASSERT_STRING_EQUAL(ots_config_get_name(c), "<defaults>");
    CU_ASSERT_TRUE(ots_settings_validate(root, ots_config_core_schema(), "", &err));
    CU_ASSERT_PTR_NULL(err);
    g_clear_error(&err);
    check_complete(root, ots_config_core_schema(), "");

    /* Offline use: no interface, events to stdout. */
    const char *s = NULL;
    CU_ASSERT_EQUAL(ots_settings_get_length(root, "capture.interfaces"), 0);
    CU_ASSERT_TRUE(ots_settings_get_string(root, "sensor.id", &s));
    CU_ASSERT_STRING_EQUAL(s, "otsensor-lab");
    CU_ASSERT_TRUE(ots_settings_get_string(root, "output.transport", &s));
    CU_ASSERT_STRING_EQUAL(s, "local");
    CU_ASSERT_TRUE(ots_settings_get_string(root, "transports.local.path", &s));
    CU_ASSERT_STRING_EQUAL(s, "-");
    CU_ASSERT_TRUE(
        g_str_has_prefix(ots_settings_get_location(root, "flows.max_flows"), "<defaults>:"));

    /* The same text through the file path: valid too (sensor.id is set). */
    OtsConfig *again = ots_config_load_string(ots_config_default_text, "defaults", &err);
    CU_ASSERT_PTR_NULL(err);
    CU_ASSERT_PTR_NOT_NULL(again);
    g_clear_error(&err);
    ots_config_free(again);

    /* The keys an interface leaves out answer from the per-element defaults. */
    OtsConfig *one = expect_ok(SENSOR "capture: { interfaces = ( { name = \"eth9\"; } ); };\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(one);
    const OtsSettingSpec *capture = schema_entry(ots_config_core_schema(), "capture");
    const OtsSettingSpec *ifaces = schema_entry(capture->children, "interfaces");
    const OtsSettings *e =
        ots_settings_get_element(ots_config_get_root(one), "capture.interfaces", 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    check_complete(e, ifaces->children, "capture.interfaces[0]");
    ots_config_free(one);
}

static void
test_etc_validates(void)
{
    GError *err = NULL;
    g_autofree char *path = etc_path();
    g_autoptr(OtsConfig) c = ots_config_load_file(path, &err);

    if (err != NULL)
        fprintf(stderr, "\n  %s\n", err->message);
    CU_ASSERT_PTR_NULL(err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    g_clear_error(&err);
    const OtsSettings *root = ots_config_get_root(c);
    CU_ASSERT_STRING_EQUAL(ots_config_get_name(c), path);

    /* Every key is written out in the file itself: none comes from the
     * defaults (the per-element defaults aside, checked below). */
    check_complete(root, ots_config_core_schema(), "");
    const char *keys[] = {"sensor.id",
                          "sensor.site",
                          "sensor.state_dir",
                          "sensor.user",
                          "capture.files",
                          "capture.event_queue_batches",
                          "flows.max_flows",
                          "flows.flow_events",
                          "plugins.paths",
                          "plugins.disable",
                          "output.transport",
                          "output.heartbeat_interval",
                          "logging.level",
                          "logging.modules",
                          "dissectors.modbus.heuristic",
                          "flows.max_pdu_bytes",
                          "capture.interfaces[0].buffer_size_mb"};
    for (guint i = 0; i < G_N_ELEMENTS(keys); i++) {
        const char *loc = ots_settings_get_location(root, keys[i]);
        if (!g_str_has_prefix(loc, path))
            fprintf(stderr, "\n  %s comes from %s\n", keys[i], loc);
        CU_ASSERT_TRUE(g_str_has_prefix(loc, path));
    }
    CU_ASSERT_EQUAL(ots_settings_get_length(root, "capture.interfaces"), 1);
    const char *name = NULL;
    CU_ASSERT_TRUE(ots_settings_get_string(root, "capture.interfaces[0].name", &name));
}

/* Same value at @key in @a and @b (scalars and arrays). */
static gboolean
same_value(const OtsSettings *a, const OtsSettings *b, const char *key)
{
    const config_setting_t *x = ots_settings_lookup(a, key, NULL);
    const config_setting_t *y = ots_settings_lookup(b, key, NULL);

    if (x == NULL || y == NULL || config_setting_type(x) != config_setting_type(y))
        return FALSE;
    switch (config_setting_type(x)) {
    case CONFIG_TYPE_STRING:
        return strcmp(config_setting_get_string(x), config_setting_get_string(y)) == 0;
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return config_setting_get_int64(x) == config_setting_get_int64(y);
    case CONFIG_TYPE_BOOL:
        return config_setting_get_bool(x) == config_setting_get_bool(y);
    case CONFIG_TYPE_ARRAY:
    case CONFIG_TYPE_LIST: {
        int n = config_setting_length(x);
        if (n != config_setting_length(y))
            return FALSE;
        for (int i = 0; i < n; i++) {
            g_autofree char *k = g_strdup_printf("%s[%d]", key, i);
            if (!same_value(a, b, k))
                return FALSE;
        }
        return TRUE;
    }
    case CONFIG_TYPE_GROUP:
        return config_setting_length(x) == 0 && config_setting_length(y) == 0;
    default:
        return FALSE;
    }
}

static void
compare_groups(const OtsSettings *etc, const OtsSettings *def, const OtsSettingSpec *spec,
               const char *path, const char *const *differ)
{
    for (; spec->name != NULL; spec++) {
        g_autofree char *p = ots_config_join_path(path, spec->name);
        if (g_strv_contains(differ, p))
            continue;
        if (spec->type == OTS_SETTING_GROUP && spec->children != NULL) {
            compare_groups(ots_settings_get_group(etc, spec->name),
                           ots_settings_get_group(def, spec->name), spec->children, p, differ);
        } else if (spec->type == OTS_SETTING_MAP && spec->children != NULL) {
            const OtsSettings *ge = ots_settings_get_group(etc, spec->name);
            const OtsSettings *gd = ots_settings_get_group(def, spec->name);
            g_autoptr(GPtrArray) ke = ots_settings_get_keys(ge);
            g_autoptr(GPtrArray) kd = ots_settings_get_keys(gd);
            CU_ASSERT_EQUAL(ke->len, kd->len);
            for (guint i = 0; i < ke->len; i++) {
                const char *k = g_ptr_array_index(ke, i);
                g_autofree char *kp = ots_config_join_path(p, k);
                compare_groups(ots_settings_get_group(ge, k), ots_settings_get_group(gd, k),
                               spec->children, kp, differ);
            }
        } else if (spec->type != OTS_SETTING_MAP) {
            gboolean same = same_value(etc, def, spec->name);
            if (!same)
                fprintf(stderr, "\n  %s differs between etc/otsensor.conf and the defaults\n", p);
            CU_ASSERT_TRUE(same);
        }
    }
}

/* The embedded defaults are etc/otsensor.conf but for the documented
 * differences. */
static void
test_etc_matches_defaults(void)
{
    g_autofree char *path = etc_path();
    g_autoptr(OtsConfig) etc = ots_config_load_file(path, NULL);
    g_autoptr(OtsConfig) def = ots_config_load_defaults();
    static const char *const differ[] = {"sensor.id", "capture.interfaces", "transports", NULL};

    CU_ASSERT_PTR_NOT_NULL_FATAL(etc);
    compare_groups(ots_config_get_root(etc), ots_config_get_root(def), ots_config_core_schema(), "",
                   differ);

    /* transports: the same plugins, only the local path differs. */
    const OtsSettings *te = ots_settings_get_group(ots_config_get_root(etc), "transports");
    const OtsSettings *td = ots_settings_get_group(ots_config_get_root(def), "transports");
    g_autoptr(GPtrArray) ke = ots_settings_get_keys(te);
    g_autoptr(GPtrArray) kd = ots_settings_get_keys(td);
    CU_ASSERT_EQUAL(ke->len, kd->len);
    const char *pe = NULL, *pd = NULL;
    CU_ASSERT_TRUE(ots_settings_get_string(te, "local.path", &pe));
    CU_ASSERT_TRUE(ots_settings_get_string(td, "local.path", &pd));
    CU_ASSERT_STRING_EQUAL(pd, "-");
    CU_ASSERT_STRING_NOT_EQUAL(pe, "-");

    /* The etc interface sets every key to its per-element default. */
    const OtsSettings *e0 =
        ots_settings_get_element(ots_config_get_root(etc), "capture.interfaces", 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e0->fallback);
    const char *iface_keys[] = {"filter", "snaplen", "promiscuous", "buffer_size_mb"};
    for (guint i = 0; i < G_N_ELEMENTS(iface_keys); i++) {
        CU_ASSERT_PTR_NOT_NULL(config_setting_get_member(e0->setting, iface_keys[i]));
        gboolean same = same_value(e0, e0->fallback, iface_keys[i]);
        if (!same)
            fprintf(stderr, "\n  interfaces[0].%s differs from its default\n", iface_keys[i]);
        CU_ASSERT_TRUE(same);
    }
}

/* ---- lookups ----------------------------------------------------------- */

static void
test_fallback_partial_file(void)
{
    g_autoptr(OtsConfig) c = expect_ok(SENSOR "flows: {\n  max_flows = 10;\n};\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    const OtsSettings *root = ots_config_get_root(c);
    const OtsSettings *flows = ots_settings_get_group(root, "flows");
    gint64 v = 0;
    gboolean b = FALSE;
    const char *s = NULL;

    CU_ASSERT_PTR_NOT_NULL_FATAL(flows);
    CU_ASSERT_TRUE(ots_settings_get_int(flows, "max_flows", &v));
    CU_ASSERT_EQUAL(v, 10);
    CU_ASSERT_TRUE(ots_settings_get_int(flows, "tcp_idle_timeout", &v));
    CU_ASSERT_EQUAL(v, 600);
    CU_ASSERT_TRUE(ots_settings_get_bool(flows, "flow_events", &b));
    CU_ASSERT_TRUE(b);
    CU_ASSERT_TRUE(ots_settings_get_int(root, "flows.udp_idle_timeout", &v));
    CU_ASSERT_EQUAL(v, 120);
    /* Whole groups the file leaves out. */
    CU_ASSERT_TRUE(ots_settings_get_int(root, "capture.event_queue_batches", &v));
    CU_ASSERT_EQUAL(v, 256);
    CU_ASSERT_TRUE(ots_settings_get_string(root, "sensor.state_dir", &s));
    CU_ASSERT_STRING_EQUAL(s, "/var/lib/otsensor");
    CU_ASSERT_TRUE(ots_settings_get_string(root, "sensor.id", &s));
    CU_ASSERT_STRING_EQUAL(s, "test-1");
    CU_ASSERT_PTR_NOT_NULL(ots_settings_get_group(root, "dissectors.modbus"));
    /* Keys of a group: the file's, then the defaults'. */
    g_autoptr(GPtrArray) keys = ots_settings_get_keys(flows);
    CU_ASSERT_EQUAL(keys->len, 7);
    CU_ASSERT_STRING_EQUAL(g_ptr_array_index(keys, 0), "max_flows");
    /* Locations. */
    CU_ASSERT_TRUE(g_str_has_suffix(ots_settings_get_location(flows, "max_flows"), ":3"));
    CU_ASSERT_TRUE(g_str_has_suffix(ots_settings_get_location(root, "flows"), ":2"));
    CU_ASSERT_TRUE(
        g_str_has_prefix(ots_settings_get_location(flows, "tcp_idle_timeout"), "<defaults>:"));
    /* The group's own place; an absent key has none. */
    CU_ASSERT_TRUE(g_str_has_suffix(ots_settings_get_location(flows, NULL), ":2"));
    CU_ASSERT_PTR_NULL(ots_settings_get_location(flows, "nope"));
    CU_ASSERT_PTR_NULL(ots_settings_get_location(NULL, "nope"));
    /* Present and empty vs absent, for arrays. */
    CU_ASSERT_PTR_NOT_NULL(ots_settings_get_location(root, "capture.files"));
    CU_ASSERT_EQUAL(ots_settings_get_length(root, "capture.files"), 0);
    CU_ASSERT_PTR_NULL(ots_settings_get_location(root, "capture.nope"));

    /* A file with no sensor group, as otsensord -o builds one. */
    g_autoptr(OtsConfig) o = expect_ok("output: { transport = \"local\"; };\n"
                                       "transports: { local: { path = \"/tmp/x\"; }; };\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    CU_ASSERT_TRUE(ots_settings_get_string(ots_config_get_root(o), "sensor.id", &s));
    CU_ASSERT_STRING_EQUAL(s, "otsensor-lab");
    CU_ASSERT_TRUE(ots_settings_get_int(ots_config_get_root(o), "flows.max_flows", &v));
    CU_ASSERT_EQUAL(v, 131072);
}

static void
test_list_and_map_replace_defaults(void)
{
    g_autoptr(OtsConfig) c =
        expect_ok(SENSOR "dissectors: {\n  dnp3: { enabled = false; };\n};\n"
                         "capture: { interfaces = ( { name = \"eth0\"; },\n"
                         "  { name = \"eth1\"; snaplen = 1500; promiscuous = false; } ); };\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    const OtsSettings *root = ots_config_get_root(c);
    gboolean b = TRUE;
    gint64 v = 0;

    CU_ASSERT_PTR_NULL(ots_settings_get_group(root, "dissectors.modbus"));
    CU_ASSERT_FALSE(ots_settings_get_bool(root, "dissectors.modbus.enabled", &b));
    g_autoptr(GPtrArray) keys = ots_settings_get_keys(ots_settings_get_group(root, "dissectors"));
    CU_ASSERT_EQUAL_FATAL(keys->len, 1);
    CU_ASSERT_STRING_EQUAL(g_ptr_array_index(keys, 0), "dnp3");
    CU_ASSERT_TRUE(ots_settings_get_bool(root, "dissectors.dnp3.enabled", &b));
    CU_ASSERT_FALSE(b);
    /* No merging into a map's groups either. */
    CU_ASSERT_FALSE(ots_settings_get_bool(root, "dissectors.dnp3.heuristic", &b));
    CU_ASSERT_EQUAL(ots_settings_get_length(root, "dissectors.dnp3.tcp_ports"), 0);

    CU_ASSERT_EQUAL(ots_settings_get_length(root, "capture.interfaces"), 2);
    CU_ASSERT_TRUE(ots_settings_get_int(root, "capture.interfaces[0].snaplen", &v));
    CU_ASSERT_EQUAL(v, 65535);
    CU_ASSERT_TRUE(ots_settings_get_int(root, "capture.interfaces[1].snaplen", &v));
    CU_ASSERT_EQUAL(v, 1500);
    const OtsSettings *e1 = ots_settings_get_element(root, "capture.interfaces", 1);
    CU_ASSERT_TRUE(ots_settings_get_bool(e1, "promiscuous", &b));
    CU_ASSERT_FALSE(b);
    CU_ASSERT_TRUE(ots_settings_get_int(e1, "buffer_size_mb", &v));
    CU_ASSERT_EQUAL(v, 32);
    CU_ASSERT_PTR_NULL(ots_settings_get_element(root, "capture.interfaces", 2));

    /* An empty list replaces the defaults' too. */
    g_autoptr(OtsConfig) e = expect_ok(SENSOR "dissectors: { };\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    g_autoptr(GPtrArray) none =
        ots_settings_get_keys(ots_settings_get_group(ots_config_get_root(e), "dissectors"));
    CU_ASSERT_EQUAL(none->len, 0);
}

static void
test_dotted_paths(void)
{
    g_autofree char *path = etc_path();
    g_autoptr(OtsConfig) c = ots_config_load_file(path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    const OtsSettings *root = ots_config_get_root(c);
    const char *s = NULL;
    gint64 v = 0;
    double d = 0;

    CU_ASSERT_TRUE(ots_settings_get_string(root, "capture.interfaces[0].name", &s));
    CU_ASSERT_STRING_EQUAL(s, "eth1");
    CU_ASSERT_EQUAL(ots_settings_get_length(root, "dissectors.modbus.tcp_ports"), 1);
    CU_ASSERT_EQUAL(ots_settings_get_int_element(root, "dissectors.modbus.tcp_ports", 0), 502);
    CU_ASSERT_TRUE(ots_settings_get_int(root, "dissectors.modbus.tcp_ports[0]", &v));
    CU_ASSERT_EQUAL(v, 502);
    CU_ASSERT_EQUAL(ots_settings_get_int_element(root, "dissectors.modbus.tcp_ports", 1), 0);
    CU_ASSERT_TRUE(ots_settings_get_float(root, "flows.max_flows", &d));
    CU_ASSERT_DOUBLE_EQUAL(d, 131072.0, 0.5);
    const OtsSettings *flows = ots_settings_get_group(root, "flows");
    CU_ASSERT_PTR_NOT_NULL(flows);
    CU_ASSERT_PTR_EQUAL(ots_settings_get_group(root, "flows"), flows);

    static const char *const bad[] = {
        "flows.",
        ".flows",
        "flows..max_flows",
        "capture.interfaces[9].name",
        "capture.interfaces[x]",
        "capture.interfaces[]",
        "flows.max_flows.x",
        "nope.max_flows",
        "flows[0]",
        "capture.interfaces[0]x",
        "capture.interfaces[-1].name",
        "",
    };
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        if (ots_settings_get_int(root, bad[i], &v) || ots_settings_get_string(root, bad[i], &s))
            fprintf(stderr, "\n  '%s' answered\n", bad[i]);
        CU_ASSERT_FALSE(ots_settings_get_int(root, bad[i], &v));
        CU_ASSERT_FALSE(ots_settings_get_string(root, bad[i], &s));
        CU_ASSERT_PTR_NULL(ots_settings_get_group(root, bad[i]));
    }
    /* Wrong type: absent. */
    CU_ASSERT_FALSE(ots_settings_get_string(root, "flows.max_flows", &s));
    CU_ASSERT_FALSE(ots_settings_get_int(root, "sensor.id", &v));
    CU_ASSERT_PTR_NULL(ots_settings_get_group(root, "flows.max_flows"));
    CU_ASSERT_PTR_NULL(ots_settings_get_string_element(root, "dissectors.modbus.tcp_ports", 0));
    /* NULL settings: an empty group. */
    CU_ASSERT_FALSE(ots_settings_get_int(NULL, "x", &v));
    CU_ASSERT_EQUAL(ots_settings_get_length(NULL, "x"), 0);
    CU_ASSERT_PTR_NULL(ots_settings_get_group(NULL, "x"));
    g_autoptr(GPtrArray) k = ots_settings_get_keys(NULL);
    CU_ASSERT_EQUAL(k->len, 0);
}

/* ---- plugin groups ----------------------------------------------------- */

static const OtsSettingSpec hop_spec[] = {
    {.name = "host", .type = OTS_SETTING_STRING, .required = TRUE},
    {.name = "port", .type = OTS_SETTING_INT, .min = 1, .max = 65535},
    {NULL},
};

static const OtsSettingSpec proxy_spec[] = {
    {.name = "host", .type = OTS_SETTING_STRING, .required = TRUE},
    {.name = "port", .type = OTS_SETTING_INT, .min = 1, .max = 65535},
    {.name = "password_file", .type = OTS_SETTING_STRING, .secret = TRUE},
    {.name = "weight", .type = OTS_SETTING_FLOAT, .min = 0, .max = 10},
    {.name = "hops", .type = OTS_SETTING_LIST, .children = hop_spec},
    {NULL},
};

static void
expect_plugin_error(const char *group_text, OtsConfigError code, const char *expected)
{
    GError *err = NULL;
    g_autofree char *text =
        g_strdup_printf(SENSOR "transports: {\n  local: { };\n%s};\n", group_text);
    char *path = write_tmp(text);
    g_autoptr(OtsConfig) c = ots_config_load_file(path, &err);

    CU_ASSERT_PTR_NULL(err);
    g_clear_error(&err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    const OtsSettings *g = ots_settings_get_group(ots_config_get_root(c), "transports.proxy");
    gboolean ok = ots_settings_validate(g, proxy_spec, "transports.proxy", &err);
    if (expected == NULL) {
        CU_ASSERT_TRUE(ok);
        CU_ASSERT_PTR_NULL(err);
        if (err)
            fprintf(stderr, "\n  %s\n", err->message);
    } else {
        CU_ASSERT_FALSE(ok);
        CU_ASSERT_PTR_NOT_NULL_FATAL(err);
        CU_ASSERT_EQUAL(err->code, (int)code);
        g_autofree char *want = expand(expected, path);
        check_message(err->message, want);
    }
    g_clear_error(&err);
    g_unlink(path);
    g_free(path);
}

static void
test_plugin_group_validation(void)
{
    /* Line 4 is the first of the group text. */
    expect_plugin_error("  proxy: {\n    host = \"p\";\n    port = 70000;\n  };\n",
                        OTS_CONFIG_ERROR_RANGE,
                        "FILE:6: transports.proxy.port: 70000 is out of range (1..65535)");
    expect_plugin_error("  proxy: {\n    hots = \"p\";\n  };\n", OTS_CONFIG_ERROR_UNKNOWN_KEY,
                        "FILE:5: transports.proxy.hots: unknown setting (did you mean 'host'?)");
    expect_plugin_error("  proxy: {\n    port = 8080;\n  };\n", OTS_CONFIG_ERROR_MISSING,
                        "FILE:4: transports.proxy.host: required setting is missing");
    expect_plugin_error("  proxy: { host = \"p\"; weight = 11.5; };\n", OTS_CONFIG_ERROR_RANGE,
                        "FILE:4: transports.proxy.weight: 11.5 is out of range (0..10)");
    expect_plugin_error("  proxy: { host = \"p\"; weight = \"x\"; };\n", OTS_CONFIG_ERROR_TYPE,
                        "FILE:4: transports.proxy.weight: expected a number, got a string");
    expect_plugin_error("  proxy: { host = \"p\";\n    hops = ( { host = \"a\"; },\n"
                        "      { host = \"b\"; port = 0; } ); };\n",
                        OTS_CONFIG_ERROR_RANGE,
                        "FILE:6: transports.proxy.hops[1].port: 0 is out of range (1..65535)");
    expect_plugin_error("  proxy: { host = \"p\"; port = 3128; weight = 2; hops = ( { host = "
                        "\"a\"; } ); };\n",
                        0, NULL);

    /* An absent group: fine unless the spec requires keys. */
    GError *err = NULL;
    CU_ASSERT_TRUE(ots_settings_validate(NULL, hop_spec + 1, "transports.x", &err));
    CU_ASSERT_FALSE(ots_settings_validate(NULL, proxy_spec, "transports.proxy", &err));
    CU_ASSERT_TRUE(g_error_matches(err, OTS_CONFIG_ERROR, OTS_CONFIG_ERROR_MISSING));
    if (err)
        CU_ASSERT_STRING_EQUAL(err->message, "transports.proxy.host: required setting is missing");
    g_clear_error(&err);
}

static void
test_set_error(void)
{
    GError *err = NULL;
    char *path = write_tmp(SENSOR "dissectors: {\n  modbus: { };\n  modbuss: { };\n};\n");
    g_autoptr(OtsConfig) c = ots_config_load_file(path, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    const OtsSettings *d = ots_settings_get_group(ots_config_get_root(c), "dissectors");

    ots_settings_set_error(d, "modbuss", "dissectors", &err, OTS_CONFIG_ERROR_UNKNOWN_KEY,
                           "no dissector plugin named '%s'", "modbuss");
    CU_ASSERT_PTR_NOT_NULL_FATAL(err);
    CU_ASSERT_TRUE(g_error_matches(err, OTS_CONFIG_ERROR, OTS_CONFIG_ERROR_UNKNOWN_KEY));
    g_autofree char *want =
        expand("FILE:4: dissectors.modbuss: no dissector plugin named 'modbuss'", path);
    check_message(err->message, want);
    g_clear_error(&err);

    /* A path that already names the key is used as is. */
    ots_settings_set_error(d, "modbuss", "dissectors.modbuss", &err, OTS_CONFIG_ERROR_VALUE,
                           "no dissector plugin named '%s'", "modbuss");
    CU_ASSERT_PTR_NOT_NULL_FATAL(err);
    check_message(err->message, want);
    g_clear_error(&err);

    /* No key: the group itself. */
    ots_settings_set_error(d, NULL, "dissectors", &err, OTS_CONFIG_ERROR_VALUE, "bad");
    g_free(want);
    want = expand("FILE:2: dissectors: bad", path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(err);
    check_message(err->message, want);
    g_clear_error(&err);
    g_unlink(path);
    g_free(path);
}

static void
test_transport_check(void)
{
    expect_error(SENSOR "output: {\n  transport = \"lcoal\";\n};\n", OTS_CONFIG_ERROR_VALUE,
                 "FILE:3: output.transport: transport 'lcoal' has no group in transports "
                 "(did you mean 'local'?)");
    expect_error(SENSOR "transports: {\n  proxy: { };\n};\n", OTS_CONFIG_ERROR_VALUE,
                 "FILE:2: transports: no group for the active transport 'local' "
                 "(see output.transport)");
    OtsConfig *c = expect_ok(SENSOR "output: { transport = \"proxy\"; };\n"
                                    "transports: { proxy: { host = \"p\"; }; };\n");
    CU_ASSERT_PTR_NOT_NULL(c);
    ots_config_free(c);
}

/* ---- "did you mean" ---------------------------------------------------- */

static void
test_suggest(void)
{
    static const char *const flows[] = {"max_flows",     "tcp_idle_timeout", "udp_idle_timeout",
                                        "max_ooo_bytes", "max_pdu_bytes",    "flow_events"};
    const guint n = G_N_ELEMENTS(flows);

    CU_ASSERT_STRING_EQUAL(ots_config_suggest("max_flow", flows, n), "max_flows");
    CU_ASSERT_STRING_EQUAL(ots_config_suggest("MAX_FLOWS", flows, n), "max_flows");
    CU_ASSERT_STRING_EQUAL(ots_config_suggest("mxa_flows", flows, n), "max_flows");
    CU_ASSERT_STRING_EQUAL(ots_config_suggest("tcp_idle_timout", flows, n), "tcp_idle_timeout");
    CU_ASSERT_STRING_EQUAL(ots_config_suggest("udp_idle_tiemout", flows, n), "udp_idle_timeout");
    CU_ASSERT_STRING_EQUAL(ots_config_suggest("flwo_events", flows, n), "flow_events");
    CU_ASSERT_STRING_EQUAL(ots_config_suggest("max_pdu_byte", flows, n), "max_pdu_bytes");
    CU_ASSERT_PTR_NULL(ots_config_suggest("snaplen", flows, n));
    /* Abbreviations: the first candidate that starts with the word. */
    CU_ASSERT_STRING_EQUAL(ots_config_suggest("tcp_idle", flows, n), "tcp_idle_timeout");
    CU_ASSERT_STRING_EQUAL(ots_config_suggest("Flow_Ev", flows, n), "flow_events");
    CU_ASSERT_PTR_NULL(ots_config_suggest("ma", flows, n));
    CU_ASSERT_PTR_NULL(ots_config_suggest("timeout", flows, n));
    CU_ASSERT_PTR_NULL(ots_config_suggest("", flows, n));
    CU_ASSERT_PTR_NULL(ots_config_suggest("max_flow", flows, 0));
    CU_ASSERT_PTR_NULL(ots_config_suggest(NULL, flows, n));

    static const char *const sensor[] = {"id", "site", "state_dir", "user"};
    CU_ASSERT_STRING_EQUAL(ots_config_suggest("ip", sensor, 4), "id");
    CU_ASSERT_STRING_EQUAL(ots_config_suggest("stie", sensor, 4), "site");
    CU_ASSERT_STRING_EQUAL(ots_config_suggest("statedir", sensor, 4), "state_dir");
    CU_ASSERT_PTR_NULL(ots_config_suggest("x", sensor, 4));
    CU_ASSERT_PTR_NULL(ots_config_suggest("name", sensor, 4));

    static const char *const holes[] = {NULL, "local", NULL, "proxy"};
    CU_ASSERT_STRING_EQUAL(ots_config_suggest("proxi", holes, 4), "proxy");
    g_autofree char *huge = g_strnfill(5000, 'a');
    CU_ASSERT_PTR_NULL(ots_config_suggest(huge, holes, 4));
}

/* ---- threads ----------------------------------------------------------- */

static gpointer
lookup_thread(gpointer data)
{
    const OtsSettings *root = data;
    guint bad = 0;

    for (int i = 0; i < 2000; i++) {
        gint64 v = 0;
        const char *s = NULL;
        if (!ots_settings_get_int(root, "flows.tcp_idle_timeout", &v) || v != 600)
            bad++;
        if (!ots_settings_get_int(root, "flows.max_flows", &v) || v != 10)
            bad++;
        if (!ots_settings_get_string(root, "capture.interfaces[0].name", &s) ||
            strcmp(s, "eth0") != 0)
            bad++;
        if (!g_str_has_prefix(ots_settings_get_location(root, "flows.udp_idle_timeout"),
                              "<defaults>:"))
            bad++;
    }
    return GUINT_TO_POINTER(bad);
}

static void
test_threads(void)
{
    g_autoptr(OtsConfig) c =
        expect_ok(SENSOR "flows: { max_flows = 10; };\n"
                         "capture: { interfaces = ( { name = \"eth0\"; } ); };\n");
    GThread *threads[4];

    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    for (guint i = 0; i < G_N_ELEMENTS(threads); i++)
        threads[i] = g_thread_new("lookup", lookup_thread, (gpointer)ots_config_get_root(c));
    for (guint i = 0; i < G_N_ELEMENTS(threads); i++)
        CU_ASSERT_EQUAL(GPOINTER_TO_UINT(g_thread_join(threads[i])), 0);
}

/* ---- ots_settings_diff ---- */

static OtsConfig *
load(const char *text)
{
    g_autoptr(GError) err = NULL;
    OtsConfig *c = ots_config_load_string(text, "diff.conf", &err);
    if (c == NULL)
        fprintf(stderr, "\n  %s\n", err->message);
    return c;
}

/* @text with its first @old replaced by @new. */
static char *
replace(const char *text, const char *old, const char *new)
{
    const char *at = strstr(text, old);
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    return g_strdup_printf("%.*s%s%s", (int)(at - text), text, new, at + strlen(old));
}

static char *
joined(GPtrArray *paths)
{
    GString *s = g_string_new(NULL);
    for (guint i = 0; i < paths->len; i++)
        g_string_append_printf(s, "%s%s", i ? "," : "", (char *)g_ptr_array_index(paths, i));
    return g_string_free(s, FALSE);
}

#define DIFF_BASE                                                                                  \
    SENSOR "output: { transport = \"direct\"; };\n"                                                \
           "capture: { interfaces = ( { name = \"lo\"; filter = \"tcp port 502\"; } ); };\n"       \
           "dissectors: { modbus: { tcp_ports = [ 502 ]; }; };\n"                                  \
           "logging: { modules: { ots-flow = \"debug\"; }; };\n"                                   \
           "transports: {\n"                                                                       \
           "  direct: { address = \"127.0.0.1\"; port = 4443; };\n"                                \
           "  proxy: { host = \"127.0.0.1\"; port = 3128; password_file = \"/s/PW-ONE\"; };\n"     \
           "};\n"

/* The paths that differ between DIFF_BASE and @b, joined with ",". */
static void
expect_diff(const char *b, const char *want)
{
    g_autoptr(OtsConfig) ca = load(DIFF_BASE);
    g_autoptr(OtsConfig) cb = load(b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ca);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cb);
    g_autoptr(GPtrArray) d = ots_settings_diff(ots_config_get_root(ca), ots_config_get_root(cb),
                                               ots_config_core_schema(), NULL);
    g_autofree char *got = joined(d);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "\n  diff: got '%s', want '%s'\n", got, want);
    CU_ASSERT_STRING_EQUAL(got, want);
}

static void
test_diff(void)
{
    expect_diff(DIFF_BASE, "");
    /* A default written out, a 64-bit literal, a list element's template
     * default: no difference. */
    expect_diff(DIFF_BASE "flows: { max_flows = 131072L; tcp_idle_timeout = 600; };\n"
                          "spool: { drop = \"oldest\"; };\n",
                "");
    g_autofree char *snap = replace(DIFF_BASE, "filter", "snaplen = 65535; filter");
    expect_diff(snap, "");
    /* Each path once, in table order whatever the file order; a list of
     * groups and an array by their own path. */
    g_autofree char *snap2 = replace(DIFF_BASE, "filter", "snaplen = 1500; filter");
    g_autofree char *two = g_strconcat("flows: { max_flows = 1000; };\n", snap2, NULL);
    g_autofree char *two2 = replace(two, "flows: {", "flows: { flow_events = false;");
    expect_diff(two2, "capture.interfaces,flows.max_flows,flows.flow_events");
    g_autofree char *files = replace(DIFF_BASE, "capture: {", "capture: { files = [ \"a.pcap\" ];");
    expect_diff(files, "capture.files");
    /* Maps and free-form groups: by the key that changed. */
    g_autofree char *ports = replace(DIFF_BASE, "[ 502 ]", "[ 502, 5020 ]");
    expect_diff(ports, "dissectors.modbus.tcp_ports");
    g_autofree char *mod =
        replace(DIFF_BASE, "ots-flow = \"debug\"", "ots-flow = \"info\"; ots-uplink = \"debug\"");
    expect_diff(mod, "logging.modules.ots-flow,logging.modules.ots-uplink");
    g_autofree char *pw = replace(DIFF_BASE, "PW-ONE", "PW-TWO");
    expect_diff(pw, "transports.proxy.password_file");
    g_autofree char *noproxy = replace(
        DIFF_BASE,
        "  proxy: { host = \"127.0.0.1\"; port = 3128; password_file = \"/s/PW-ONE\"; };\n", "");
    expect_diff(noproxy, "transports.proxy");
    g_autofree char *tr = replace(DIFF_BASE, "transport = \"direct\"", "transport = \"proxy\"");
    expect_diff(tr, "output.transport");

    /* A group alone, with a prefix; NULL is an empty group. Never a value. */
    g_autoptr(OtsConfig) a = load(DIFF_BASE);
    g_autoptr(OtsConfig) b = load(pw);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    const OtsSettings *pa = ots_settings_get_group(ots_config_get_root(a), "transports.proxy");
    const OtsSettings *pb = ots_settings_get_group(ots_config_get_root(b), "transports.proxy");
    g_autoptr(GPtrArray) d1 = ots_settings_diff(pa, pb, NULL, "transports.proxy");
    CU_ASSERT_EQUAL_FATAL(d1->len, 1);
    CU_ASSERT_STRING_EQUAL(g_ptr_array_index(d1, 0), "transports.proxy.password_file");
    g_autoptr(GPtrArray) d2 = ots_settings_diff(pa, NULL, NULL, NULL);
    g_autofree char *j2 = joined(d2);
    CU_ASSERT_STRING_EQUAL(j2, "host,port,password_file");
    g_autoptr(GPtrArray) d3 = ots_settings_diff(NULL, NULL, ots_config_core_schema(), NULL);
    CU_ASSERT_EQUAL(d3->len, 0);
    const OtsSettings *da = ots_settings_get_group(ots_config_get_root(a), "transports.direct");
    g_autoptr(GPtrArray) d4 = ots_settings_diff(da, da, NULL, NULL);
    CU_ASSERT_EQUAL(d4->len, 0);
}

static CU_TestInfo error_tests[] = {
    {"type error", test_type_error},
    {"range error", test_range_error},
    {"integer truncated to 32 bits", test_truncated_integer},
    {"unknown key with a hint", test_unknown_key},
    {"missing required key", test_missing_required},
    {"string choices", test_choices},
    {"array element", test_array_element},
    {"list element", test_list_element},
    {"string length and characters", test_string_checks},
    {"syntax error line", test_syntax_error},
    {"io error", test_io_error},
    {"first error in file order", test_first_error_in_file_order},
    {"include directive", test_include},
    {"nesting depth", test_nesting_depth},
    {"active transport has a group", test_transport_check},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo defaults_tests[] = {
    {"embedded defaults valid and complete", test_defaults_valid_and_complete},
    {"etc/otsensor.conf validates", test_etc_validates},
    {"etc/otsensor.conf matches the defaults", test_etc_matches_defaults},
    {"fallback to defaults", test_fallback_partial_file},
    {"lists and maps replace the defaults", test_list_and_map_replace_defaults},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo lookup_tests[] = {
    {"dotted paths", test_dotted_paths},
    {"plugin group validation", test_plugin_group_validation},
    {"set_error", test_set_error},
    {"suggest", test_suggest},
    {"lookups from threads", test_threads},
    {"diff", test_diff},
    CU_TEST_INFO_NULL,
};

/* clang-format off */
#define OTS_TEST_SUITES                                                                            \
    {"config errors", NULL, NULL, NULL, NULL, error_tests},                                        \
    {"config defaults", NULL, NULL, NULL, NULL, defaults_tests},                                   \
    {"config lookups", NULL, NULL, NULL, NULL, lookup_tests}
/* clang-format on */
#include "cunit-main.h"
