/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Shared main() for the CUnit test programs: each test file defines
 * OTS_TEST_SUITES as a list of { "suite name", CU_TestInfo[] } and includes
 * this file last. Exit status is the number of failures (0 = pass). */

#include <CUnit/Basic.h>
#include <stdlib.h>

int
main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_SuiteInfo suites[] = {OTS_TEST_SUITES, CU_SUITE_INFO_NULL};
    if (CU_register_suites(suites) != CUE_SUCCESS)
        return 2;
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failures ? 1 : 0;
}
