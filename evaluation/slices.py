"""The features the Evaluator slices its metrics by: features of the ranking examples (DataCheck's
`ranking_examples`), each slice being one value of one feature (`major_group=13`)."""

# major_group: the job's SOC major group; text_words_bucket: short, medium or long job descriptions.
SLICE_FEATURES = ("major_group", "text_words_bucket")
