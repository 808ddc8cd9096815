-- 003: an inverted index of rag_chunks for the search statement (rag/pg_search.h).
--
-- Ranking needs, for each word of a question, how many chunks hold it (its
-- document frequency, for the idf) and each chunk's score for that word alone
-- (ts_rank_cd(tsv, word, 32), its "impact"). Computed per question they cost a
-- look at every chunk holding any of the words: thousands of rows in a large
-- knowledge base. Here they are computed once, when a chunk is written:
--
--   rag_corpus    the number of chunks (one row)
--   rag_lexemes   every lexeme of some chunk, with its document frequency
--   rag_postings  one row per (chunk, lexeme) with the impact, computed by the
--                 same ts_rank_cd call, so scores summed from it are the same
--                 to the bit as those ranked at query time
--
-- rag_postings_impact_idx lists each lexeme's chunks best impact first, so the
-- search reads the first few hundred postings of a common word and stops (an
-- index-only scan), however many chunks hold it. Among equal impacts, chunks
-- with more lexemes come first (pg_search.h says why).
--
-- Triggers on rag_chunks keep all three right for every writer: ingest, a bulk
-- INSERT ... SELECT, anyone's own UPDATE, DELETE or TRUNCATE. They work per
-- statement, over its transition tables, so a 10,000-row INSERT is one pass.
-- Rows are keyed by integers (rag_chunks.num, rag_lexemes.id) rather than the
-- 64-character chunk ids and the lexemes, which keeps the indexes small.

-- The chunk's key in rag_postings, numbered by Postgres (ALWAYS: writers
-- cannot set it). Ingest keeps the rows of unchanged chunks, numbers included.
ALTER TABLE rag_chunks ADD COLUMN num bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE rag_chunks ADD CONSTRAINT rag_chunks_num_key UNIQUE (num);

CREATE TABLE rag_corpus (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    chunks  bigint NOT NULL CHECK (chunks >= 0)
);

-- COLLATE "C": lexemes are only ever looked up by equality, byte for byte.
CREATE TABLE rag_lexemes (
    id      integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lexeme  text COLLATE "C" NOT NULL UNIQUE,
    df      integer NOT NULL CHECK (df >= 0)
);

CREATE TABLE rag_postings (
    chunk   bigint NOT NULL,  -- rag_chunks.num
    lexeme  integer NOT NULL, -- rag_lexemes.id
    impact  real NOT NULL,    -- ts_rank_cd(tsv, lexeme, 32): real, as ts_rank_cd returns it
    size    integer NOT NULL, -- the chunk's number of lexemes (length(tsv))
    PRIMARY KEY (chunk, lexeme) INCLUDE (impact)
);
CREATE INDEX rag_postings_impact_idx ON rag_postings (lexeme, impact DESC, size DESC, chunk);

-- A tsquery of one lexeme, quoted so that its characters are taken literally,
-- never as query syntax, and it is not stemmed a second time.
CREATE FUNCTION rag_lexeme_query(lexeme text) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT ('''' || replace(replace(lexeme, chr(92), chr(92) || chr(92)), '''', '''''') || '''')::tsquery
$$;

-- Adds the postings of the chunks numbered nums (already in rag_chunks) and
-- counts them in. Lexemes new to the corpus get a row; the others a higher df.
CREATE FUNCTION rag_postings_add(nums bigint[]) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF coalesce(cardinality(nums), 0) = 0 THEN
        RETURN;
    END IF;
    WITH p AS (
        SELECT c.num, l AS lexeme, ts_rank_cd(c.tsv, rag_lexeme_query(l), 32) AS impact, length(c.tsv) AS size
        FROM unnest(nums) AS u (num) JOIN rag_chunks c ON c.num = u.num, unnest(tsvector_to_array(c.tsv)) AS l),
    n AS (SELECT lexeme, count(*)::integer AS df FROM p GROUP BY lexeme),
    known AS (UPDATE rag_lexemes x SET df = x.df + n.df FROM n WHERE x.lexeme = n.lexeme RETURNING x.id, x.lexeme),
    fresh AS (
        INSERT INTO rag_lexemes (lexeme, df)
        SELECT lexeme, df FROM n WHERE NOT EXISTS (SELECT 1 FROM rag_lexemes x WHERE x.lexeme = n.lexeme)
        RETURNING id, lexeme),
    ids AS (SELECT * FROM known UNION ALL SELECT * FROM fresh)
    INSERT INTO rag_postings (chunk, lexeme, impact, size)
    SELECT p.num, ids.id, p.impact, p.size FROM p JOIN ids ON ids.lexeme = p.lexeme;
    UPDATE rag_corpus SET chunks = chunks + cardinality(nums);
END $$;

-- Removes the postings of the chunks numbered nums and counts them out. A
-- lexeme left in no chunk goes, so the table holds the current vocabulary.
CREATE FUNCTION rag_postings_remove(nums bigint[]) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    emptied integer[];
BEGIN
    IF coalesce(cardinality(nums), 0) = 0 THEN
        RETURN;
    END IF;
    -- One statement cannot change a row twice, so the lexemes that reach df 0 are deleted by the next.
    WITH gone AS (DELETE FROM rag_postings WHERE chunk = ANY (nums) RETURNING lexeme),
    n AS (SELECT lexeme, count(*)::integer AS df FROM gone GROUP BY lexeme),
    x AS (UPDATE rag_lexemes x SET df = x.df - n.df FROM n WHERE x.id = n.lexeme RETURNING x.id, x.df)
    SELECT array_agg(id) INTO emptied FROM x WHERE df = 0;
    DELETE FROM rag_lexemes WHERE id = ANY (emptied);
    UPDATE rag_corpus SET chunks = chunks - cardinality(nums);
END $$;

-- Writers of rag_chunks take turns, one transaction at a time, by locking
-- rag_corpus's one row before the statement touches any row of rag_chunks.
-- Every write changes that row and the df of the common lexemes, so concurrent
-- writers would wait on each other anyway; taken first, this is the only wait.
-- Without it, two ingests that each hold some lexeme rows (or chunk ids) and
-- want the other's deadlock. A row lock, not a table lock, so that neither the
-- search's reads nor autovacuum get in its way.
CREATE FUNCTION rag_chunks_lock() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM FROM rag_corpus FOR UPDATE;
    RETURN NULL;
END $$;

-- After each statement on rag_chunks: its rows out of and into the index. An
-- UPDATE that leaves a row's tsv as it was (ingest keeping title and position
-- current) costs nothing.
CREATE FUNCTION rag_chunks_index() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM rag_postings_add(array_agg(num)) FROM new_chunks;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM rag_postings_remove(array_agg(num)) FROM old_chunks;
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM rag_postings_remove(array_agg(o.num)) FROM old_chunks o
            WHERE NOT EXISTS (SELECT 1 FROM new_chunks n WHERE n.num = o.num AND n.tsv = o.tsv);
        PERFORM rag_postings_add(array_agg(n.num)) FROM new_chunks n
            WHERE NOT EXISTS (SELECT 1 FROM old_chunks o WHERE o.num = n.num AND o.tsv = n.tsv);
    ELSE
        TRUNCATE rag_postings, rag_lexemes;
        UPDATE rag_corpus SET chunks = 0;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER rag_chunks_lock BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON rag_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION rag_chunks_lock();
-- A trigger with transition tables serves one event.
CREATE TRIGGER rag_chunks_insert AFTER INSERT ON rag_chunks REFERENCING NEW TABLE AS new_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION rag_chunks_index();
CREATE TRIGGER rag_chunks_update AFTER UPDATE ON rag_chunks REFERENCING OLD TABLE AS old_chunks NEW TABLE AS new_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION rag_chunks_index();
CREATE TRIGGER rag_chunks_delete AFTER DELETE ON rag_chunks REFERENCING OLD TABLE AS old_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION rag_chunks_index();
CREATE TRIGGER rag_chunks_truncate AFTER TRUNCATE ON rag_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION rag_chunks_index();

-- The chunks already there (a database at version 2 that has been ingested into).
INSERT INTO rag_corpus (chunks) VALUES (0);
SELECT rag_postings_add(array_agg(num)) FROM rag_chunks;
-- Statistics now, so the first searches are planned on them rather than on an empty table's guesses.
ANALYZE rag_corpus, rag_lexemes, rag_postings;
