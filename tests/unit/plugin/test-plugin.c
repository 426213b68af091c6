/* SPDX-License-Identifier: Apache-2.0 */
#include "core/plugin/loader.h"

#include <CUnit/CUnit.h>
#include <string.h>

static char *
fixture(const char *name)
{
    return g_strdup_printf("%s/libots-fixture-%s.so", FIXTURE_DIR, name);
}

static void
test_good(void)
{
    g_autoptr(OtsPluginSet) set = ots_plugin_set_new();
    g_autofree char *path = fixture("good");
    g_autoptr(GError) err = NULL;
    CU_ASSERT_TRUE(ots_plugin_set_load_file(set, path, &err));
    CU_ASSERT_PTR_NULL(err);
    const OtsPlugin *pl = ots_plugin_set_find(set, OTS_PLUGIN_KIND_DISSECTOR, "fixgood");
    CU_ASSERT_PTR_NOT_NULL_FATAL(pl);
    CU_ASSERT_EQUAL(pl->header->abi_major, OTS_ABI_MAJOR);
    /* loading it twice is refused as a duplicate */
    g_autoptr(GError) err2 = NULL;
    CU_ASSERT_FALSE(ots_plugin_set_load_file(set, path, &err2));
    CU_ASSERT_TRUE(g_error_matches(err2, OTS_PLUGIN_ERROR, OTS_PLUGIN_ERROR_DUPLICATE));
}

static void
expect_refused(const char *name, OtsPluginError code, const char *needle)
{
    g_autoptr(OtsPluginSet) set = ots_plugin_set_new();
    g_autofree char *path = fixture(name);
    g_autoptr(GError) err = NULL;
    CU_ASSERT_FALSE(ots_plugin_set_load_file(set, path, &err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(err);
    if (!g_error_matches(err, OTS_PLUGIN_ERROR, code) || !strstr(err->message, needle))
        g_printerr("%s: got \"%s\"\n", name, err->message);
    CU_ASSERT_TRUE(g_error_matches(err, OTS_PLUGIN_ERROR, code));
    CU_ASSERT_PTR_NOT_NULL(strstr(err->message, needle));
    CU_ASSERT_EQUAL(set->plugins->len, 0);
    CU_ASSERT_EQUAL_FATAL(set->refused->len, 1);
    /* the refusal names the file */
    CU_ASSERT_PTR_NOT_NULL(strstr(set->refused->pdata[0], path));
}

static void
test_abi_major(void)
{
    g_autofree char *want = g_strdup_printf("built for SDK ABI %d.%d, this otsensord has ABI %d.%d",
                                            OTS_ABI_MAJOR + 1, OTS_ABI_MINOR, OTS_ABI_MAJOR,
                                            OTS_ABI_MINOR);
    expect_refused("abimajor", OTS_PLUGIN_ERROR_ABI, want);
}

static void
test_abi_minor_newer(void)
{
    g_autofree char *want = g_strdup_printf("built for SDK ABI %d.%d, this otsensord has ABI %d.%d",
                                            OTS_ABI_MAJOR, OTS_ABI_MINOR + 1, OTS_ABI_MAJOR,
                                            OTS_ABI_MINOR);
    expect_refused("abiminor", OTS_PLUGIN_ERROR_ABI, want);
}

static void
test_invalid(void)
{
    expect_refused("noparse", OTS_PLUGIN_ERROR_INVALID, "no parse function");
    expect_refused("nosymbol", OTS_PLUGIN_ERROR_SYMBOL, "ots_plugin_get_info");
    expect_refused("badname", OTS_PLUGIN_ERROR_INVALID, "invalid plugin name");
}

static void
test_missing_file(void)
{
    g_autoptr(OtsPluginSet) set = ots_plugin_set_new();
    g_autoptr(GError) err = NULL;
    CU_ASSERT_FALSE(ots_plugin_set_load_file(set, "/nonexistent/libots-x.so", &err));
    CU_ASSERT_TRUE(g_error_matches(err, OTS_PLUGIN_ERROR, OTS_PLUGIN_ERROR_OPEN));
}

static void
test_dir_continues(void)
{
    /* A directory with one good plugin and several bad ones: the good one
     * loads, each bad one is refused and listed. */
    g_autoptr(OtsPluginSet) set = ots_plugin_set_new();
    ots_plugin_set_load_dir(set, FIXTURE_DIR, 0);
    CU_ASSERT_EQUAL(set->plugins->len, 1);
    CU_ASSERT_PTR_NOT_NULL(ots_plugin_set_find(set, OTS_PLUGIN_KIND_DISSECTOR, "fixgood"));
    CU_ASSERT_EQUAL(set->refused->len, 5);
}

static void
test_disabled(void)
{
    g_autoptr(OtsPluginSet) set = ots_plugin_set_new();
    set->disable = g_strsplit("fixgood", ",", -1);
    g_autofree char *path = fixture("good");
    g_autoptr(GError) err = NULL;
    CU_ASSERT_FALSE(ots_plugin_set_load_file(set, path, &err));
    CU_ASSERT_PTR_NULL(err);
    CU_ASSERT_EQUAL(set->plugins->len, 0);
    CU_ASSERT_EQUAL(set->refused->len, 0);
}

static CU_TestInfo plugin_tests[] = {
    {"disabled by name", test_disabled},
    {"good plugin loads", test_good},
    {"other ABI major refused", test_abi_major},
    {"newer ABI minor refused", test_abi_minor_newer},
    {"invalid descriptors refused", test_invalid},
    {"missing file", test_missing_file},
    {"directory: refusals do not stop the others", test_dir_continues},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES {"plugin", NULL, NULL, NULL, NULL, plugin_tests}
#include "cunit-main.h"
