# The `specreason` command end to end (real binary, generated models).
add_test(NAME test_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_cli.sh $<TARGET_FILE:specreason-cli> ${SR_MODEL_DIR})
set_tests_properties(test_cli PROPERTIES LABELS model FIXTURES_REQUIRED models_biased TIMEOUT 600)
# The repository stands on its own: no tracked build, test or script file reads the developers-only folder beside it.
add_test(NAME repo_no_shared_paths COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/no_shared_paths.sh ${CMAKE_SOURCE_DIR})
set_tests_properties(repo_no_shared_paths PROPERTIES LABELS unit TIMEOUT 60)
