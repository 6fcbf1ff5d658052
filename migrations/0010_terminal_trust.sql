-- Terminal trust (SPEC 7): each tag log entry carries the charging terminal's own MAC, and the backend refuses log
-- entries and offline sales it cannot trust, each under a named problem (api.tag_sync, api.replicate).
-- depends: 0009_audience_roles

SET ROLE festpay_owner;

INSERT INTO ledger.problem (slug, sqlstate, http_status, title) VALUES
    ('log-entry-forged',            'FP060', 422, 'A tag log entry does not carry the valid MAC of the terminal it names'),
    ('log-entry-foreign',           'FP061', 422, 'A tag log entry names a terminal that is not a sale position of this event'),
    ('log-entry-number-too-high',   'FP062', 422, 'A tag log entry''s tag number is not below the tag''s next number'),
    ('offline-limit-exceeded',      'FP063', 422, 'The tag''s unreserved offline charges exceed the event''s offline limit'),
    ('implausible-offline-charge',  'FP064', 422, 'An offline sale of an unknown tag or above the event''s offline limit');

RESET ROLE;
