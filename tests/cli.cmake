# The `specreason` command end to end (real binary, generated models).
add_test(NAME test_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_cli.sh $<TARGET_FILE:specreason-cli> ${SR_MODEL_DIR})
set_tests_properties(test_cli PROPERTIES LABELS model FIXTURES_REQUIRED models_biased TIMEOUT 600)
