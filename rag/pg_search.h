/*
 * The Postgres full-text search statement (placeholder until tuned): $1 the
 * question, $2 how many; one row, one json column of passages, best first.
 */
#ifndef SB_RAG_PG_SEARCH_H
#define SB_RAG_PG_SEARCH_H

#define SB_RAG_PG_SEARCH_SQL                                                                                                       \
    "select coalesce(json_agg(json_build_object('source', source, 'title', title, 'heading', heading, 'text', content,"            \
    " 'score', score) order by score desc), '[]'::json) from ("                                                                    \
    " select c.source, c.title, c.heading, c.content, ts_rank_cd(c.tsv, q.query) as score"                                         \
    " from rag_chunks c, (select to_tsquery('english', string_agg(quote_literal(l), ' | ')) as query"                              \
    "  from unnest(tsvector_to_array(to_tsvector('english', $1::text))) as l) q"                                                   \
    " where q.query is not null and c.tsv @@ q.query order by score desc limit $2::int) r"

#endif
