/* SPDX-License-Identifier: Apache-2.0 */

/* Name tables of the BACnet dissector (ASHRAE 135 enumerations), kept apart
 * from the parser so bacnet.c stays readable. Names are lower_snake_case as
 * they appear in events. */

#include "bacnet-private.h"

static const char *const bvlc_names[] = {
    [0x00] = "bvlc_result",
    [0x01] = "write_broadcast_distribution_table",
    [0x02] = "read_broadcast_distribution_table",
    [0x03] = "read_broadcast_distribution_table_ack",
    [0x04] = "forwarded_npdu",
    [0x05] = "register_foreign_device",
    [0x06] = "read_foreign_device_table",
    [0x07] = "read_foreign_device_table_ack",
    [0x08] = "delete_foreign_device_table_entry",
    [0x09] = "distribute_broadcast_to_network",
    [0x0a] = "original_unicast_npdu",
    [0x0b] = "original_broadcast_npdu",
    [0x0c] = "secure_bvll",
};

static const char *const apdu_type_names[] = {
    "confirmed_request",
    "unconfirmed_request",
    "simple_ack",
    "complex_ack",
    "segment_ack",
    "error",
    "reject",
    "abort",
};

static const char *const confirmed_names[] = {
    [0] = "acknowledge_alarm",
    [1] = "confirmed_cov_notification",
    [2] = "confirmed_event_notification",
    [3] = "get_alarm_summary",
    [4] = "get_enrollment_summary",
    [5] = "subscribe_cov",
    [6] = "atomic_read_file",
    [7] = "atomic_write_file",
    [8] = "add_list_element",
    [9] = "remove_list_element",
    [10] = "create_object",
    [11] = "delete_object",
    [12] = "read_property",
    [13] = "read_property_conditional",
    [14] = "read_property_multiple",
    [15] = "write_property",
    [16] = "write_property_multiple",
    [17] = "device_communication_control",
    [18] = "confirmed_private_transfer",
    [19] = "confirmed_text_message",
    [20] = "reinitialize_device",
    [21] = "vt_open",
    [22] = "vt_close",
    [23] = "vt_data",
    [24] = "authenticate",
    [25] = "request_key",
    [26] = "read_range",
    [27] = "life_safety_operation",
    [28] = "subscribe_cov_property",
    [29] = "get_event_information",
    [30] = "subscribe_cov_property_multiple",
    [31] = "confirmed_cov_notification_multiple",
    [32] = "confirmed_audit_notification",
    [33] = "audit_log_query",
};

static const OtsOpClass confirmed_classes[] = {
    [0] = OTS_OP_OTHER,         [1] = OTS_OP_MONITOR,       [2] = OTS_OP_MONITOR,
    [3] = OTS_OP_READ,          [4] = OTS_OP_READ,          [5] = OTS_OP_MONITOR,
    [6] = OTS_OP_FILE_TRANSFER, [7] = OTS_OP_FILE_TRANSFER, [8] = OTS_OP_WRITE,
    [9] = OTS_OP_WRITE,         [10] = OTS_OP_CONFIG,       [11] = OTS_OP_CONFIG,
    [12] = OTS_OP_READ,         [13] = OTS_OP_READ,         [14] = OTS_OP_READ,
    [15] = OTS_OP_WRITE,        [16] = OTS_OP_WRITE,        [17] = OTS_OP_COMM_CONTROL,
    [18] = OTS_OP_OTHER,        [19] = OTS_OP_OTHER,        [20] = OTS_OP_RESTART,
    [21] = OTS_OP_SESSION,      [22] = OTS_OP_SESSION,      [23] = OTS_OP_SESSION,
    [24] = OTS_OP_SESSION,      [25] = OTS_OP_SESSION,      [26] = OTS_OP_READ,
    [27] = OTS_OP_CONTROL,      [28] = OTS_OP_MONITOR,      [29] = OTS_OP_READ,
    [30] = OTS_OP_MONITOR,      [31] = OTS_OP_MONITOR,      [32] = OTS_OP_MONITOR,
    [33] = OTS_OP_READ,
};

static const char *const unconfirmed_names[] = {
    [0] = "i_am",
    [1] = "i_have",
    [2] = "unconfirmed_cov_notification",
    [3] = "unconfirmed_event_notification",
    [4] = "unconfirmed_private_transfer",
    [5] = "unconfirmed_text_message",
    [6] = "time_synchronization",
    [7] = "who_has",
    [8] = "who_is",
    [9] = "utc_time_synchronization",
    [10] = "write_group",
    [11] = "unconfirmed_cov_notification_multiple",
    [12] = "unconfirmed_audit_notification",
    [13] = "who_am_i",
    [14] = "you_are",
};

static const OtsOpClass unconfirmed_classes[] = {
    [0] = OTS_OP_DISCOVERY, [1] = OTS_OP_DISCOVERY,  [2] = OTS_OP_MONITOR,  [3] = OTS_OP_MONITOR,
    [4] = OTS_OP_OTHER,     [5] = OTS_OP_OTHER,      [6] = OTS_OP_TIME_SET, [7] = OTS_OP_DISCOVERY,
    [8] = OTS_OP_DISCOVERY, [9] = OTS_OP_TIME_SET,   [10] = OTS_OP_WRITE,   [11] = OTS_OP_MONITOR,
    [12] = OTS_OP_MONITOR,  [13] = OTS_OP_DISCOVERY, [14] = OTS_OP_CONFIG,
};

static const char *const network_message_names[] = {
    [0x00] = "who_is_router_to_network",
    [0x01] = "i_am_router_to_network",
    [0x02] = "i_could_be_router_to_network",
    [0x03] = "reject_message_to_network",
    [0x04] = "router_busy_to_network",
    [0x05] = "router_available_to_network",
    [0x06] = "initialize_routing_table",
    [0x07] = "initialize_routing_table_ack",
    [0x08] = "establish_connection_to_network",
    [0x09] = "disconnect_connection_to_network",
    [0x0a] = "challenge_request",
    [0x0b] = "security_payload",
    [0x0c] = "security_response",
    [0x0d] = "request_key_update",
    [0x0e] = "update_key_set",
    [0x0f] = "update_distribution_key",
    [0x10] = "request_master_key",
    [0x11] = "set_master_key",
    [0x12] = "what_is_network_number",
    [0x13] = "network_number_is",
};

static const char *const object_type_names[] = {
    "analog_input",
    "analog_output",
    "analog_value",
    "binary_input",
    "binary_output",
    "binary_value",
    "calendar",
    "command",
    "device",
    "event_enrollment",
    "file",
    "group",
    "loop",
    "multi_state_input",
    "multi_state_output",
    "notification_class",
    "program",
    "schedule",
    "averaging",
    "multi_state_value",
    "trend_log",
    "life_safety_point",
    "life_safety_zone",
    "accumulator",
    "pulse_converter",
    "event_log",
    "global_group",
    "trend_log_multiple",
    "load_control",
    "structured_view",
    "access_door",
    "timer",
    "access_credential",
    "access_point",
    "access_rights",
    "access_user",
    "access_zone",
    "credential_data_input",
    "network_security",
    "bitstring_value",
    "characterstring_value",
    "date_pattern_value",
    "date_value",
    "datetime_pattern_value",
    "datetime_value",
    "integer_value",
    "large_analog_value",
    "octetstring_value",
    "positive_integer_value",
    "time_pattern_value",
    "time_value",
    "notification_forwarder",
    "alert_enrollment",
    "channel",
    "lighting_output",
    "binary_lighting_output",
    "network_port",
    "elevator_group",
    "escalator",
    "lift",
    "staging",
    "audit_log",
    "audit_reporter",
    "color",
    "color_temperature",
};

/* The properties a sensor sees most: identity, values, commanding, alarms,
 * logs, the device object. Others are reported by number only. */
static const char *const property_names[] = {
    [0] = "acked_transitions",
    [1] = "ack_required",
    [2] = "action",
    [3] = "action_text",
    [4] = "active_text",
    [5] = "active_vt_sessions",
    [6] = "alarm_value",
    [7] = "alarm_values",
    [8] = "all",
    [9] = "all_writes_successful",
    [10] = "apdu_segment_timeout",
    [11] = "apdu_timeout",
    [12] = "application_software_version",
    [13] = "archive",
    [14] = "bias",
    [15] = "change_of_state_count",
    [16] = "change_of_state_time",
    [17] = "notification_class",
    [19] = "controlled_variable_reference",
    [20] = "controlled_variable_units",
    [21] = "controlled_variable_value",
    [22] = "cov_increment",
    [23] = "date_list",
    [24] = "daylight_savings_status",
    [25] = "deadband",
    [26] = "derivative_constant",
    [27] = "derivative_constant_units",
    [28] = "description",
    [29] = "description_of_halt",
    [30] = "device_address_binding",
    [31] = "device_type",
    [32] = "effective_period",
    [33] = "elapsed_active_time",
    [34] = "error_limit",
    [35] = "event_enable",
    [36] = "event_state",
    [37] = "event_type",
    [38] = "exception_schedule",
    [39] = "fault_values",
    [40] = "feedback_value",
    [41] = "file_access_method",
    [42] = "file_size",
    [43] = "file_type",
    [44] = "firmware_revision",
    [45] = "high_limit",
    [46] = "inactive_text",
    [47] = "in_process",
    [48] = "instance_of",
    [49] = "integral_constant",
    [50] = "integral_constant_units",
    [52] = "limit_enable",
    [53] = "list_of_group_members",
    [54] = "list_of_object_property_references",
    [56] = "local_date",
    [57] = "local_time",
    [58] = "location",
    [59] = "low_limit",
    [60] = "manipulated_variable_reference",
    [61] = "maximum_output",
    [62] = "max_apdu_length_accepted",
    [63] = "max_info_frames",
    [64] = "max_master",
    [65] = "max_pres_value",
    [66] = "minimum_off_time",
    [67] = "minimum_on_time",
    [68] = "minimum_output",
    [69] = "min_pres_value",
    [70] = "model_name",
    [71] = "modification_date",
    [72] = "notify_type",
    [73] = "number_of_apdu_retries",
    [74] = "number_of_states",
    [75] = "object_identifier",
    [76] = "object_list",
    [77] = "object_name",
    [78] = "object_property_reference",
    [79] = "object_type",
    [80] = "optional",
    [81] = "out_of_service",
    [82] = "output_units",
    [83] = "event_parameters",
    [84] = "polarity",
    [85] = "present_value",
    [86] = "priority",
    [87] = "priority_array",
    [88] = "priority_for_writing",
    [89] = "process_identifier",
    [90] = "program_change",
    [91] = "program_location",
    [92] = "program_state",
    [93] = "proportional_constant",
    [94] = "proportional_constant_units",
    [96] = "protocol_object_types_supported",
    [97] = "protocol_services_supported",
    [98] = "protocol_version",
    [99] = "read_only",
    [100] = "reason_for_halt",
    [102] = "recipient_list",
    [103] = "reliability",
    [104] = "relinquish_default",
    [105] = "required",
    [106] = "resolution",
    [107] = "segmentation_supported",
    [108] = "setpoint",
    [109] = "setpoint_reference",
    [110] = "state_text",
    [111] = "status_flags",
    [112] = "system_status",
    [113] = "time_delay",
    [114] = "time_of_active_time_reset",
    [115] = "time_of_state_count_reset",
    [116] = "time_synchronization_recipients",
    [117] = "units",
    [118] = "update_interval",
    [119] = "utc_offset",
    [120] = "vendor_identifier",
    [121] = "vendor_name",
    [122] = "vt_classes_supported",
    [123] = "weekly_schedule",
    [124] = "attempted_samples",
    [125] = "average_value",
    [126] = "buffer_size",
    [127] = "client_cov_increment",
    [128] = "cov_resubscription_interval",
    [130] = "event_time_stamps",
    [131] = "log_buffer",
    [132] = "log_device_object_property",
    [133] = "enable",
    [134] = "log_interval",
    [135] = "maximum_value",
    [136] = "minimum_value",
    [137] = "notification_threshold",
    [139] = "protocol_revision",
    [140] = "records_since_notification",
    [141] = "record_count",
    [142] = "start_time",
    [143] = "stop_time",
    [144] = "stop_when_full",
    [145] = "total_record_count",
    [146] = "valid_samples",
    [147] = "window_interval",
    [148] = "window_samples",
    [149] = "maximum_value_timestamp",
    [150] = "minimum_value_timestamp",
    [151] = "variance_value",
    [152] = "active_cov_subscriptions",
    [153] = "backup_failure_timeout",
    [154] = "configuration_files",
    [155] = "database_revision",
    [156] = "direct_reading",
    [157] = "last_restore_time",
    [158] = "maintenance_required",
    [159] = "member_of",
    [160] = "mode",
    [161] = "operation_expected",
    [162] = "setting",
    [163] = "silenced",
    [164] = "tracking_value",
    [165] = "zone_members",
    [166] = "life_safety_alarm_values",
    [167] = "max_segments_accepted",
    [168] = "profile_name",
    [169] = "auto_slave_discovery",
    [170] = "manual_slave_address_binding",
    [171] = "slave_address_binding",
    [172] = "slave_proxy_enable",
    [173] = "last_notify_record",
    [174] = "schedule_default",
    [175] = "accepted_modes",
    [176] = "adjust_value",
    [177] = "count",
    [178] = "count_before_change",
    [179] = "count_change_time",
    [180] = "cov_period",
    [181] = "input_reference",
    [182] = "limit_monitoring_interval",
    [183] = "logging_object",
    [184] = "logging_record",
    [185] = "prescale",
    [186] = "pulse_rate",
    [187] = "scale",
    [188] = "scale_factor",
    [189] = "update_time",
    [190] = "value_before_change",
    [191] = "value_set",
    [192] = "value_change_time",
    [193] = "align_intervals",
    [195] = "interval_offset",
    [196] = "last_restart_reason",
    [197] = "logging_type",
    [202] = "restart_notification_recipients",
    [203] = "time_of_device_restart",
    [204] = "time_synchronization_interval",
    [205] = "trigger",
    [206] = "utc_time_synchronization_recipients",
    [371] = "property_list",
    [372] = "serial_number",
};

static const char *const error_class_names[] = {
    "device", "object", "property", "resources", "security", "services", "vt", "communication",
};

static const char *const reject_reason_names[] = {
    "other",
    "buffer_overflow",
    "inconsistent_parameters",
    "invalid_parameter_data_type",
    "invalid_tag",
    "missing_required_parameter",
    "parameter_out_of_range",
    "too_many_arguments",
    "undefined_enumeration",
    "unrecognized_service",
    "invalid_data_encoding",
};

static const char *const abort_reason_names[] = {
    "other",
    "buffer_overflow",
    "invalid_apdu_in_this_state",
    "preempted_by_higher_priority_task",
    "segmentation_not_supported",
    "security_error",
    "insufficient_security",
    "window_size_out_of_range",
    "application_exceeded_reply_time",
    "out_of_resources",
    "tsm_timeout",
    "apdu_too_long",
};

static const char *const segmentation_names[] = {
    "both",
    "transmit",
    "receive",
    "none",
};

static const char *const reinit_state_names[] = {
    "coldstart",     "warmstart",   "start_backup",  "end_backup",
    "start_restore", "end_restore", "abort_restore", "activate_changes",
};

static const char *const dcc_names[] = {
    "enable",
    "disable",
    "disable_initiation",
};

#define LOOKUP(table, v) ((v) < G_N_ELEMENTS(table) && (table)[v] ? (table)[v] : NULL)

const char *
bacnet_bvlc_name(guint v)
{
    return LOOKUP(bvlc_names, v);
}

const char *
bacnet_apdu_type_name(guint v)
{
    return LOOKUP(apdu_type_names, v);
}

const char *
bacnet_service_name(gboolean confirmed, guint v)
{
    return confirmed ? LOOKUP(confirmed_names, v) : LOOKUP(unconfirmed_names, v);
}

OtsOpClass
bacnet_service_class(gboolean confirmed, guint v)
{
    if (confirmed)
        return v < G_N_ELEMENTS(confirmed_classes) ? confirmed_classes[v] : OTS_OP_OTHER;
    return v < G_N_ELEMENTS(unconfirmed_classes) ? unconfirmed_classes[v] : OTS_OP_OTHER;
}

const char *
bacnet_network_message_name(guint v)
{
    return LOOKUP(network_message_names, v);
}

const char *
bacnet_object_type_name(guint v)
{
    return LOOKUP(object_type_names, v);
}

const char *
bacnet_property_name(guint64 v)
{
    return v < G_N_ELEMENTS(property_names) ? property_names[v] : NULL;
}

const char *
bacnet_error_class_name(guint64 v)
{
    return v < G_N_ELEMENTS(error_class_names) ? error_class_names[v] : NULL;
}

const char *
bacnet_reject_reason_name(guint v)
{
    return LOOKUP(reject_reason_names, v);
}

const char *
bacnet_abort_reason_name(guint v)
{
    return LOOKUP(abort_reason_names, v);
}

const char *
bacnet_segmentation_name(guint64 v)
{
    return v < G_N_ELEMENTS(segmentation_names) ? segmentation_names[v] : NULL;
}

const char *
bacnet_reinit_state_name(guint64 v)
{
    return v < G_N_ELEMENTS(reinit_state_names) ? reinit_state_names[v] : NULL;
}

const char *
bacnet_dcc_name(guint64 v)
{
    return v < G_N_ELEMENTS(dcc_names) ? dcc_names[v] : NULL;
}
