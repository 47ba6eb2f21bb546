# The `specreason` command end to end (real binary, generated models).
add_test(NAME test_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_cli.sh $<TARGET_FILE:specreason-cli> ${SR_MODEL_DIR})
set_tests_properties(test_cli PROPERTIES LABELS model FIXTURES_REQUIRED models_biased TIMEOUT 600)
# The repository stands on its own: no tracked build, test or script file reads the developers-only folder beside it.
add_test(NAME repo_no_shared_paths COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/no_shared_paths.sh ${CMAKE_SOURCE_DIR})
set_tests_properties(repo_no_shared_paths PROPERTIES LABELS unit TIMEOUT 60)
# `specreason-server` end to end (real server on a free loopback port, generated models).
foreach(part api errors disconnect overlap load)
    add_test(NAME test_server_${part} COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_server.py
             $<TARGET_FILE:specreason-server> $<TARGET_FILE:specreason-cli> ${SR_MODEL_DIR} ${part})
    set_tests_properties(test_server_${part} PROPERTIES LABELS model FIXTURES_REQUIRED models_sd TIMEOUT 1800)
endforeach()
# The official `openai` npm client against the server (installed into the build tree on first use).
add_test(NAME test_server_openai COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_server_openai.sh
         $<TARGET_FILE:specreason-server> ${SR_MODEL_DIR} ${CMAKE_BINARY_DIR}/openai-npm)
set_tests_properties(test_server_openai PROPERTIES LABELS model FIXTURES_REQUIRED models_biased TIMEOUT 900
                     SKIP_RETURN_CODE 77)
# The request parser's fuzz target, replayed over its seed corpus (label fuzz).
sr_add_test(fuzz_replay_request NOLIB LABELS fuzz
            SOURCES fuzz/replay_main.c fuzz/fuzz_request.c ${CMAKE_SOURCE_DIR}/server/request.c
            ARGS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus_request)
target_include_directories(fuzz_replay_request PRIVATE ${CMAKE_SOURCE_DIR}/server)
target_link_libraries(fuzz_replay_request PRIVATE PkgConfig::JANSSON)
