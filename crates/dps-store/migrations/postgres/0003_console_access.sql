-- The console's sign-in state, shared by every instance on one database (issue #15 item 2): sessions (the
-- SHA-256 of each token, never the token) and the sign-in attempts counted per fixed window and key.
CREATE TABLE console_sessions (
    token_key TEXT COLLATE "C" PRIMARY KEY,
    expires   TEXT COLLATE "C" NOT NULL
);
CREATE TABLE login_attempts (
    key   TEXT COLLATE "C" PRIMARY KEY,
    count BIGINT NOT NULL,
    since TEXT COLLATE "C" NOT NULL
);
