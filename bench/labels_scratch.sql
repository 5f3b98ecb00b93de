-- Scratch tables for bench/labels.py before migrations 0006-0008 exist: the public names
-- of issues 18 and 19, in the column style of result_code_history (0001/0003).
CREATE SCHEMA obs_sync;
CREATE TABLE obs_sync.result_code_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source text NOT NULL, vdn_id integer NOT NULL, obs_code text NOT NULL,
    obs_code_desc text NOT NULL, valid_from timestamptz NOT NULL, valid_to timestamptz,
    sync_run_id bigint NOT NULL, closed_by_sync_run_id bigint);
CREATE UNIQUE INDEX result_code_history_at_uq
    ON obs_sync.result_code_history (source, vdn_id, obs_code, valid_from) INCLUDE (valid_to);
CREATE TABLE obs_sync.display_result_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source text NOT NULL, vdn_id integer NOT NULL, def_id text NOT NULL,
    result_code text NOT NULL, display_result text NOT NULL,
    valid_from timestamptz NOT NULL, valid_to timestamptz,
    sync_run_id bigint NOT NULL, closed_by_sync_run_id bigint);
CREATE UNIQUE INDEX display_result_history_at_uq
    ON obs_sync.display_result_history (source, vdn_id, def_id, valid_from) INCLUDE (valid_to);
CREATE TABLE obs_sync.display_result_obs_code_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source text NOT NULL, vdn_id integer NOT NULL, def_id text NOT NULL, obs_code text NOT NULL,
    valid_from timestamptz NOT NULL, valid_to timestamptz,
    sync_run_id bigint NOT NULL, closed_by_sync_run_id bigint);
CREATE UNIQUE INDEX display_result_obs_code_history_at_uq
    ON obs_sync.display_result_obs_code_history (source, vdn_id, def_id, obs_code, valid_from)
    INCLUDE (valid_to);
CREATE TABLE obs_sync.business_result_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source text NOT NULL, vdn_id integer NOT NULL, parent_code text NOT NULL, code text NOT NULL,
    name text NOT NULL, level smallint NOT NULL,
    valid_from timestamptz NOT NULL, valid_to timestamptz,
    sync_run_id bigint NOT NULL, closed_by_sync_run_id bigint);
CREATE UNIQUE INDEX business_result_history_at_uq
    ON obs_sync.business_result_history (source, vdn_id, parent_code, code, valid_from)
    INCLUDE (valid_to);
