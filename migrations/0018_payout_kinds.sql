-- A donation: the account kind and transaction type of money a customer gives to the festival's donation account
-- (schema/00_foundation.sql). A migration of its own: a new enum value cannot be used in the transaction that adds it,
-- and yoyo applies each migration in a transaction of its own, so 0019_payouts can use both.
-- depends: 0017_provider_outcomes

SET ROLE festpay_owner;

ALTER TYPE ledger.account_kind ADD VALUE IF NOT EXISTS 'donation';
ALTER TYPE ledger.tx_type ADD VALUE IF NOT EXISTS 'donation';

RESET ROLE;
