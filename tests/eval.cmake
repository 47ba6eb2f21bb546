# eval.cmake: tests of specreason-eval (cli/eval/), driven by tests/test_eval.py (python3, standard
# library only). Parts: e2e (3 MATH-500 problems x base/small/spec t=3,7 on the biased generated
# models: outputs, resume, cut-line recovery), gpqa (choice shuffling on a 2-problem CSV),
# report (statistics on crafted records, no model), bad (bad input, no model) and server (the same
# records through a running specreason-server, --concurrency 2, with resume).
if(TARGET specreason-eval)
    set(SR_EVAL_ARGS $<TARGET_FILE:specreason-eval> ${SR_MODEL_DIR}/small-b.gguf ${SR_MODEL_DIR}/base-b.gguf
        ${SR_DATA_DIR}/math500.jsonl)
    foreach(part e2e gpqa report bad)
        add_test(NAME test_eval_${part}
            COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_eval.py ${part} ${SR_EVAL_ARGS}
                    ${CMAKE_CURRENT_BINARY_DIR}/eval_${part})
        if(part STREQUAL "e2e" OR part STREQUAL "gpqa")
            set_tests_properties(test_eval_${part} PROPERTIES LABELS model FIXTURES_REQUIRED models_biased TIMEOUT 300)
        else()
            set_tests_properties(test_eval_${part} PROPERTIES LABELS unit TIMEOUT 120)
        endif()
    endforeach()
    # through a real specreason-server (F32 models: batched == alone exactly), --concurrency 2
    if(TARGET specreason-server)
        add_test(NAME test_eval_server
            COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_eval.py server ${SR_EVAL_ARGS}
                    ${CMAKE_CURRENT_BINARY_DIR}/eval_server $<TARGET_FILE:specreason-server>
                    ${SR_MODEL_DIR}/small-f32.gguf ${SR_MODEL_DIR}/base-f32.gguf)
        set_tests_properties(test_eval_server PROPERTIES LABELS model FIXTURES_REQUIRED models_sd TIMEOUT 600)
    endif()
endif()
