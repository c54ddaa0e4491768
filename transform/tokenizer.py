"""Tokenizer for CVs, job descriptions and corpus text, built from TensorFlow string ops only.

`tokenize` runs inside the Transform graph and therefore inside the serving SavedModel
(TensorFlow Serving), so it uses only core TensorFlow ops: `tf.strings.unicode_transcode`,
`tf.strings.lower`, `tf.strings.regex_replace` / `regex_full_match` (RE2 syntax, no lookarounds),
`tf.strings.split` and ragged ops. No `tf.py_function`, no tensorflow_text.

Rules, applied in this order to each document:

1. Clean-up. Invalid UTF-8 sequences become U+FFFD (a separator, see 3). The text is lowercased
      with Unicode case mapping (`tf.strings.lower(encoding='utf-8')`: "ÉCOLE" -> "école").
      No Unicode normalisation (NFC/NFKC) is applied.
2. Character mapping. Typographic apostrophes (U+2018, U+2019, U+02BC) become `'`; Unicode
      hyphens U+2010 and U+2011 become `-`; the invisible characters U+00AD (soft hyphen),
      U+200C, U+200D, U+2060 and U+FEFF are deleted, so they never split a word.
3. Separators. Token characters are letters (\\pL), digits (\\pN), combining marks (\\pM) and the
      joiners `. - / ' & _ + #`. Every other character is a separator: whitespace, `, ; : ( ) [ ] { }`,
      quotes, `! ? * = | < > @ % $`, dashes other than `-` (en dash, em dash: "2010–2015" ->
   "2010", "2015"), bullets, symbols, emoji, U+FFFD. Runs of two or more `.`, `-` or `/`
      ("...", "--", "//") are separators too, so ellipses, ASCII dashes and the "//" of URLs split.
      The text is then split into tokens at separators.
4. Edges. Each token loses its leading and trailing joiner characters ("python." -> "python",
   "-python" -> "python", "'quoted'" -> "quoted", "java/" -> "java"), with three exceptions:
   - a single leading `.` directly followed by a letter is kept: ".net" (but ".5" -> "5");
   - a run of `+` / `#` directly after a letter is kept: "c++", "c#", "f#", "notepad++"
          ("c++." -> "c++"); after a digit it is dropped ("5+ years" -> "5", "years");
   - a trailing possessive `'s` is dropped: "company's" -> "company", "master's" -> "master".
      Joiners inside a token are kept: "asp.net", "node.js", "x.509", "3.5", "e-commerce",
   "r&d", "o'reilly", "c++11". Consequently abbreviations lose only their final period:
   "e.g." -> "e.g", "ph.d." -> "ph.d".
5. Slashes. A token containing `/` stays whole when every `/`-separated part is at most 3
      characters long -- acronym pairs and short alternatives: "ci/cd", "tcp/ip", "pl/sql", "ui/ux",
   "i/o", "24/7", "c/c++", "and/or" (kept as one token: it is one word in CV prose). Otherwise it
      is split at every `/` and each part gets rule 4 again: "html/css/javascript" -> "html", "css",
   "javascript"; "java/python"; "asp.net/c#" -> "asp.net", "c#"; "01/02/2020" -> "01", "02", "2020".
6. Tokens without any letter or digit ("+", "&", "-'") are dropped.

Guarantees: tokens are non-empty, contain no whitespace or line breaks (so they are safe in a
text-format vocabulary file), contain at least one letter or digit, and are lowercase.
Numbers are kept as tokens ("2019", "3.5", "24/7").
"""

import tensorflow as tf

# Rule 2: character mapping.
_APOSTROPHES = r"[\x{2018}\x{2019}\x{02BC}]"
_HYPHENS = r"[\x{2010}\x{2011}]"
_INVISIBLE = r"[\x{00AD}\x{200C}\x{200D}\x{2060}\x{FEFF}]"

# Rule 3: anything that is not a token character, plus runs of repeated `.`, `-` or `/`.
_SEPARATORS = r"[^\pL\pN\pM.\-/'&_+#]+|\.\.+|--+|//+"

# Rule 4, leading edge: drop the shortest prefix that ends right before ".<letter>" or before the
# first letter/digit (non-greedy, because RE2 has no lookahead).
_LEADING = r"^[^\pL\pN]*?(\.\pL|[\pL\pN])"
# Rule 4, trailing edge: keep the last letter/digit/mark, or a letter with its `+`/`#` run; drop an
# optional possessive 's and every joiner after it.
_TRAILING = r"(\pL[+#]+|[\pL\pN\pM])(?:'s)?[^\pL\pN\pM]*$"

# Rule 5: a token with a slash and a slash-free run of 4+ characters is split at its slashes.
_HAS_SLASH = r".*/.*"
_HAS_LONG_PART = r".*[^/]{4}.*"

# Rule 6.
_HAS_ALNUM = r".*[\pL\pN].*"


def _strip_edges(tokens: tf.Tensor) -> tf.Tensor:
    """Rule 4 on a flat string tensor of tokens."""
    tokens = tf.strings.regex_replace(tokens, _LEADING, r"\1", replace_global=False)
    return tf.strings.regex_replace(tokens, _TRAILING, r"\1", replace_global=False)


def _split_long_slash_tokens(tokens: tf.Tensor) -> tf.Tensor:
    """Rule 5 on a flat string tensor: turns the slashes of tokens to split into spaces."""
    split = tf.logical_and(tf.strings.regex_full_match(tokens, _HAS_SLASH),
                           tf.strings.regex_full_match(tokens, _HAS_LONG_PART))
    return tf.where(split, tf.strings.regex_replace(tokens, "/", " "), tokens)


def _map_flat(tokens: tf.RaggedTensor, fn) -> tf.RaggedTensor:
    return tokens.with_flat_values(fn(tokens.flat_values))


def tokenize(text: tf.Tensor) -> tf.RaggedTensor:
    """Splits documents into tokens following the rules in the module docstring.

    Args:
        text: string Tensor of shape [batch], one UTF-8 document per element.

    Returns:
        A string RaggedTensor of shape [batch, None]: row i holds the tokens of text[i] in order
        (an empty row for a document without tokens).

    Raises:
        ValueError: when the static rank of `text` is known and is not 1.
    """
    text = tf.convert_to_tensor(text, dtype=tf.string)
    if text.shape.rank is not None and text.shape.rank != 1:
        raise ValueError(f"tokenize expects a string tensor of shape [batch], got shape {text.shape}")

    # Rules 1-3 on whole documents.
    text = tf.strings.unicode_transcode(
        text, input_encoding="UTF-8", output_encoding="UTF-8", errors="replace")
    text = tf.strings.lower(text, encoding="utf-8")
    text = tf.strings.regex_replace(text, _APOSTROPHES, "'")
    text = tf.strings.regex_replace(text, _HYPHENS, "-")
    text = tf.strings.regex_replace(text, _INVISIBLE, "")
    text = tf.strings.regex_replace(text, _SEPARATORS, " ")
    tokens = tf.strings.split(text)  # on whitespace: [batch, None]

    # Rule 4 before rule 5, because the slash decision needs stripped tokens ("pl/sql." has a
    # 4-character part), and again after it for the parts ("java/-c" -> "java", "c").
    tokens = _map_flat(tokens, _strip_edges)
    tokens = _map_flat(tokens, _split_long_slash_tokens)
    tokens = tf.strings.split(tokens).merge_dims(1, 2)  # [batch, token, part] -> [batch, part]
    tokens = _map_flat(tokens, _strip_edges)

    # Rule 6.
    keep = _map_flat(tokens, lambda flat: tf.strings.regex_full_match(flat, _HAS_ALNUM))
    return tf.ragged.boolean_mask(tokens, keep)
