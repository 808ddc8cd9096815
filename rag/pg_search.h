/*
 * The Postgres full-text search statement of the retrieval backend, over
 * rag_chunks (tools/schema/002_rag_chunks.sql, loaded by switchboard-ingest)
 * and the inverted index that triggers keep of it (003_rag_postings.sql).
 * $1 is the caller's question, $2 how many passages (K); it returns one row
 * with one json column: [{"source", "title", "heading", "text", "score"}, ...],
 * best first, or [] when nothing matches.
 *
 * How it ranks, and why (measured with tests/unit/test_rag_pg.c against
 * tests/rag/eval.json, recall@4 of the expected document):
 *
 * - OR, not AND. Callers speak in long, chatty sentences; plainto_tsquery and
 *   websearch_to_tsquery require every word and almost nothing matches. Each
 *   of the question's own lexemes (to_tsvector: stemmed, stop words gone) is a
 *   query of its own. They are looked up by equality in rag_lexemes, so no text
 *   of the caller's is ever parsed as tsquery syntax. A question of only stop
 *   words (or empty) has no lexemes, hence no rows: [].
 *
 * - Rare words count more. One ts_rank_cd over "a | b | c" weighs "order" or
 *   "kettle", which are on every page, like "PayPal" (recall@4 0.76, 0.80 with
 *   the best normalization). Each lexeme is weighted by its inverse document
 *   frequency over rag_chunks (the BM25 idf), and a chunk scores the sum over
 *   the lexemes it contains of idf times ts_rank_cd(tsv, lexeme, 32), that
 *   lexeme's "impact" in the chunk. ts_rank_cd supplies the weighted term
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
 * Speed at scale. Counting each word's document frequency and ranking every
 * chunk that holds any word of the question took 13-70 ms at 10,000 chunks: a
 * question's common words are in thousands of them. Both are computed when a
 * chunk is written instead (tools/schema/003_rag_postings.sql): rag_lexemes
 * holds each lexeme's document frequency, rag_corpus the number of chunks, and
 * rag_postings each (chunk, lexeme) impact, the ts_rank_cd above to the bit.
 * The statement then takes
 *
 *   terms   the question's lexemes found in rag_lexemes, with their idf; the
 *           32 rarest.
 *   found   for each term its postings, best impact first, at most
 *           max(100, 1000 / terms) of them: an index-only scan of
 *           rag_postings_impact_idx that stops there, so a question reads at
 *           most 1,000 postings (3,200 for 32 terms) however large the
 *           knowledge base. Summed per chunk, the best max(20, 5 K) chunks
 *           are the candidates: K documents of five sections each.
 *   scored  each candidate's exact score, from its postings for all the terms
 *           (the primary key): a passage's score is the one ranking every
 *           chunk gives it, so RAG_MIN_SCORE keeps its meaning.
 *   picked  the round-robin above, over the candidates.
 *
 * A posting list shorter than its cut is read whole, so where no word of the
 * question is in more than 100 chunks (the demo knowledge has 78 in all) the
 * answers are exactly those of ranking every chunk, SB_RAG_PG_EXACT_SQL below
 * (tests/unit/test_rag_pg.c checks it). Beyond that, a chunk in none of its
 * terms' best postings is missed. Impacts are coarse (one mention in the body
 * is one value, shared by most of a common word's chunks), so a cut usually
 * falls among equal impacts; there the chunks with more lexemes come first,
 * as the ranking sums over the question's words and a chunk with more words
 * is likelier to hold the others too. At 10,000 chunks (tests/bench/rag-run)
 * 119 of the 216 passages the eval questions get are those of the exact
 * ranking, and recall@4 is 0.44, the exact ranking's. The exact rescoring is
 * most of the statement's time, about 9 us a candidate: 20 candidates take
 * 0.65 ms in a tight loop, 40 take 0.88 ms and share 140 passages with the
 * exact ranking; 2,000 postings and 40 candidates share 178 for a quarter
 * more time than that, 3,000 and 50 share 190 for half more. Run by a backend
 * that slept since the last turn, as switchboard's pool runs it, the statement
 * takes about 1.8 times its tight-loop time: these fractions of a millisecond
 * decide whether retrieval through switchboard stays under 2 ms. (With 40
 * candidates, cutting ties by chunk number instead, the earliest written
 * first, shared 129 passages; its recall@4 of 0.56 only showed that the
 * benchmark writes the demo knowledge first.)
 *
 * No word is left out for being common any more (an earlier speed fix dropped
 * those in more than 20 % of the chunks): the cut bounds what they cost, and
 * with them the exact ranking's recall@4 at 10,000 chunks is 0.44, not 0.33.
 */
#define SB_RAG_PG_SEARCH_SQL                                                                                                       \
    "WITH n AS (SELECT chunks::float8 AS total FROM rag_corpus),"                                                                  \
    " terms AS ("                                                                                                                  \
    " SELECT x.id, ln(1 + (n.total - x.df + 0.5) / (x.df + 0.5))::float8 AS idf"                                                   \
    " FROM unnest(tsvector_to_array(to_tsvector('english', $1::text))) AS l JOIN rag_lexemes x ON x.lexeme = l, n"                 \
    " ORDER BY idf DESC, x.lexeme LIMIT 32),"                                                                                      \
    " found AS ("                                                                                                                  \
    " SELECT p.chunk, sum(t.idf * p.impact) AS part"                                                                               \
    " FROM terms t CROSS JOIN LATERAL ("                                                                                           \
    "  SELECT chunk, impact FROM rag_postings p WHERE p.lexeme = t.id ORDER BY impact DESC, size DESC, chunk"                      \
    "  LIMIT greatest(100, 1000 / nullif((SELECT count(*) FROM terms), 0))) p"                                                     \
    " GROUP BY p.chunk ORDER BY part DESC, p.chunk LIMIT greatest(20, 5 * least($2::int, 100))),"                                  \
    " scored AS ("                                                                                                                 \
    " SELECT c.id, c.source, c.title, c.heading, c.content,"                                                                       \
    "  (SELECT sum(t.idf * p.impact) FROM terms t JOIN rag_postings p ON p.chunk = f.chunk AND p.lexeme = t.id) AS score"          \
    " FROM found f JOIN rag_chunks c ON c.num = f.chunk),"                                                                         \
    " picked AS ("                                                                                                                 \
    " SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY source ORDER BY score DESC, id) AS nth FROM scored) s"              \
    " ORDER BY nth, score DESC, id LIMIT greatest($2::int, 0))"                                                                    \
    " SELECT coalesce(json_agg(json_build_object('source', source, 'title', title, 'heading', heading, 'text', content,"           \
    " 'score', round(score::numeric, 4)) ORDER BY score DESC, id), '[]'::json) FROM picked"

/*
 * The same ranking computed from rag_chunks alone, scoring every chunk that
 * holds any of the words (document frequencies counted through the GIN index,
 * ts_rank_cd at query time): what SB_RAG_PG_SEARCH_SQL equals when no posting
 * list is cut, and approximates when some are. Too slow to serve (70 ms at
 * 10,000 chunks); tests/unit/test_rag_pg.c and tests/bench/rag.mjs compare the
 * statement with it.
 */
#define SB_RAG_PG_EXACT_SQL                                                                                                        \
    "WITH n AS (SELECT count(*)::float8 AS total FROM rag_chunks),"                                                                \
    " terms AS ("                                                                                                                  \
    " SELECT tq, ln(1 + (n.total - df + 0.5) / (df + 0.5))::float8 AS idf"                                                         \
    " FROM (SELECT l, tq, (SELECT count(*) FROM rag_chunks c WHERE c.tsv @@ tq) AS df"                                             \
    "  FROM (SELECT l, ('''' || replace(replace(l, chr(92), chr(92) || chr(92)), '''', '''''') || '''')::tsquery AS tq"            \
    "   FROM unnest(tsvector_to_array(to_tsvector('english', $1::text))) AS l) x) t, n"                                            \
    " WHERE df > 0 ORDER BY idf DESC, l COLLATE \"C\" LIMIT 32),"                                                                  \
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
