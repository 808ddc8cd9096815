-- 002: knowledge retrieval. Passages of the knowledge base (Markdown and text
-- files, split along their headings by `switchboard-ingest`), searched with
-- Postgres full-text search before the model answers (rag/pg_search.h).
--
-- id is a hash of (source, heading, content), so re-ingesting an unchanged
-- file produces the same ids and writes nothing, and an edited file changes
-- only the rows of the passages that changed.
--
-- tsv weights the document title and the section heading (A) above the body
-- (B): a caller's words that name the topic ("refund", "warranty") should pick
-- the section about it over one that merely mentions them.

CREATE TABLE rag_chunks (
    id          text PRIMARY KEY,
    source      text NOT NULL,
    title       text NOT NULL,
    heading     text NOT NULL DEFAULT '',
    content     text NOT NULL,
    position    integer NOT NULL,
    tsv         tsvector GENERATED ALWAYS AS (
                    setweight(to_tsvector('english', title || ' ' || heading), 'A') ||
                    setweight(to_tsvector('english', content), 'B')) STORED,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rag_chunks_tsv_idx ON rag_chunks USING gin (tsv);
-- Ingest reads and replaces one source's chunks at a time.
CREATE INDEX rag_chunks_source_idx ON rag_chunks (source, position);
