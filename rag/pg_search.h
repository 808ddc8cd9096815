/*
 * The Postgres full-text search statement of the retrieval backend, over
 * rag_chunks (tools/schema/002_rag_chunks.sql, loaded by switchboard-ingest).
 * $1 is the caller's question, $2 how many passages (K); it returns one row
 * with one json column: [{"source", "title", "heading", "text", "score"}, ...],
 * best first, or [] when nothing matches.
 *
 * Why it is built this way (measured with tests/unit/test_rag_pg.c against
 * tests/rag/eval.json, recall@4 of the expected document):
 *
 * - OR, not AND. Callers speak in long, chatty sentences; plainto_tsquery and
 *   websearch_to_tsquery require every word and almost nothing matches. The
 *   question's own lexemes (to_tsvector: stemmed, stop words gone) are each a
 *   query of their own. They are quoted and cast to tsquery rather than passed
 *   through to_tsquery, so no text of the caller's is ever parsed as query
 *   syntax and the stemmed lexemes are not stemmed a second time. A question
 *   of only stop words (or empty) has no lexemes, hence no rows: [].
 *
 * - Rare words count more. One ts_rank_cd over "a | b | c" weighs "order" or
 *   "kettle", which are on every page, like "PayPal" (recall@4 0.76, 0.80 with
 *   the best normalization). Each lexeme is weighted by its inverse document
 *   frequency over rag_chunks (the BM25 idf, counted through the GIN index),
 *   and a chunk scores the sum over the lexemes it contains of idf times
 *   ts_rank_cd for that lexeme. ts_rank_cd still supplies the weighted term
 *   frequency (title and heading, weight A, count 2.5 times the body, B), and
 *   normalization 32 (rank / (rank + 1)) saturates it so a word repeated ten
 *   times is not ten times the evidence (0.89; BM25 length normalization and
 *   normalizations 1, 2, 8 did no better). Only the 32 rarest lexemes of a
 *   question are used, which bounds the work for a 10 KB paste.
 *
 * - One passage per document first. A document's sections share its
 *   vocabulary, so the top four were often four sections of the one wrong
 *   page. Passages are taken round-robin: the best of each document by score,
 *   then the second best of each, and so on (0.93). With fewer matching
 *   documents than K, a document still gives several passages.
 *
 * The result is then ordered by score. Scores are only comparable within one
 * question (RAG_MIN_SCORE thresholds should be set by looking at them).
 */
#ifndef SB_RAG_PG_SEARCH_H
#define SB_RAG_PG_SEARCH_H

/*
 * Speed at scale: words found in more than max(50, 20 %) of the chunks are
 * left out of the scoring (their idf is small, and scoring them touched most
 * of the table), and the chunks' text is joined in only for the few rows
 * picked, so the grouping and sorting carry ids and scores alone.
 */
#define SB_RAG_PG_SEARCH_SQL                                                                                                       \
    "WITH n AS (SELECT count(*)::float8 AS total FROM rag_chunks),"                                                                \
    " terms AS ("                                                                                                                  \
    " SELECT tq, ln(1 + (n.total - df + 0.5) / (df + 0.5))::float8 AS idf"                                                         \
    " FROM (SELECT tq, (SELECT count(*) FROM rag_chunks c WHERE c.tsv @@ tq) AS df"                                                \
    "  FROM (SELECT DISTINCT ('''' || replace(replace(l, chr(92), chr(92) || chr(92)), '''', '''''') || '''')::tsquery AS tq"      \
    "   FROM unnest(tsvector_to_array(to_tsvector('english', $1::text))) AS l) x) t, n"                                            \
    " WHERE df > 0 AND df <= greatest(50, 0.2 * n.total) ORDER BY idf DESC, tq::text LIMIT 32),"                                   \
    " scored AS ("                                                                                                                 \
    " SELECT c.id, c.source, sum(t.idf * ts_rank_cd(c.tsv, t.tq, 32)) AS score"                                                    \
    " FROM terms t JOIN rag_chunks c ON c.tsv @@ t.tq GROUP BY c.id, c.source),"                                                   \
    " picked AS ("                                                                                                                 \
    " SELECT id, score FROM (SELECT *, row_number() OVER (PARTITION BY source ORDER BY score DESC, id) AS nth FROM scored) s"      \
    " ORDER BY nth, score DESC, id LIMIT greatest($2::int, 0))"                                                                    \
    " SELECT coalesce(json_agg(json_build_object('source', c.source, 'title', c.title, 'heading', c.heading, 'text', c.content,"   \
    " 'score', round(p.score::numeric, 4)) ORDER BY p.score DESC, p.id), '[]'::json)"                                              \
    " FROM picked p JOIN rag_chunks c ON c.id = p.id"

#endif
