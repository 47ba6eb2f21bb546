/* placeholder */
typedef int sr_placeholder_grade;
