/* placeholder */
typedef int sr_placeholder_json;
