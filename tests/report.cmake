# report.cmake: the HTML report of specreason-eval (--html, cli/report_html.c), driven by
# tests/test_report.py (python3, standard library only): crafted records (no model) and a real
# run with --save-steps on the biased generated models.
if(TARGET specreason-eval)
    foreach(part crafted e2e)
        add_test(NAME test_report_${part}
            COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_report.py ${part} $<TARGET_FILE:specreason-eval>
                    ${SR_MODEL_DIR}/small-b.gguf ${SR_MODEL_DIR}/base-b.gguf ${SR_DATA_DIR}/math500.jsonl
                    ${CMAKE_CURRENT_BINARY_DIR}/report_${part})
        if(part STREQUAL "e2e")
            set_tests_properties(test_report_${part} PROPERTIES LABELS model FIXTURES_REQUIRED models_biased TIMEOUT 300)
        else()
            set_tests_properties(test_report_${part} PROPERTIES LABELS unit TIMEOUT 120)
        endif()
    endforeach()
endif()

# The report's fuzz target (tests/fuzz/fuzz_report.c) replayed over its seed corpus: any
# results.jsonl gives a report, and no input text comes out as markup.
sr_add_test(fuzz_replay_report NOLIB LABELS fuzz
            SOURCES fuzz/replay_main.c fuzz/fuzz_report.c ${CMAKE_SOURCE_DIR}/cli/report_html.c
            ARGS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus_report)
target_include_directories(fuzz_replay_report PRIVATE ${CMAKE_SOURCE_DIR}/cli)
target_link_libraries(fuzz_replay_report PRIVATE sr_web_assets PkgConfig::JANSSON)
