//! One certificate order with the ACME CA: the account (loaded from storage, or created and
//! stored), the order, its challenges offered through [`super::challenge`], the certificate
//! request, and the issued chain written to storage.

use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};

use super::challenge::{self, Offer};
use super::{certs, storage, ChallengeKind, Wanted};

/// How long the CA may take to validate, and then to issue.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(120));

const ACCOUNT_DOES_NOT_EXIST: &str = "urn:ietf:params:acme:error:accountDoesNotExist";

fn builder(w: &Wanted) -> Result<instant_acme::AccountBuilder, String> {
    match &w.ca_root {
        Some(root) => Account::builder_with_root(root)
            .map_err(|e| format!("caRoot `{}`: {e}", root.display())),
        None => Account::builder().map_err(|e| format!("HTTPS client: {e}")),
    }
}

/// The stored account for `w`'s CA, or a new one (stored 0600).
async fn account(w: &Wanted, fresh: bool) -> Result<Account, String> {
    let file = storage::account_path(&w.storage, &w.directory);
    if !fresh {
        if let Ok(data) = std::fs::read(&file) {
            match serde_json::from_slice::<AccountCredentials>(&data) {
                Ok(creds) => {
                    return builder(w)?
                        .from_credentials(creds)
                        .await
                        .map_err(|e| format!("ACME account from `{}`: {e}", file.display()))
                }
                Err(e) => tracing::warn!(
                    "ignoring unreadable ACME account `{}`: {e}; creating a new account",
                    file.display()
                ),
            }
        }
    }
    let contact = w.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, creds) = builder(w)?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            w.directory.clone(),
            None,
        )
        .await
        .map_err(|e| format!("creating the ACME account at {}: {e}", w.directory))?;
    let json = serde_json::to_vec_pretty(&creds).map_err(|e| format!("account: {e}"))?;
    storage::ensure_dir(&w.storage)
        .and_then(|_| storage::write_private(&file, &json))
        .map_err(|e| format!("storing the ACME account in `{}`: {e}", file.display()))?;
    tracing::info!(directory = %w.directory, "ACME account created");
    Ok(account)
}

/// Orders a certificate for `w.host`, answers its challenge, and stores the issued chain and its
/// key. Errors say which step failed.
pub async fn issue(w: &Wanted) -> Result<(), String> {
    let ids = [Identifier::Dns(w.host.clone())];
    let account_now = account(w, false).await?;
    let mut order = match account_now.new_order(&NewOrder::new(&ids)).await {
        Ok(o) => o,
        Err(instant_acme::Error::Api(p)) if p.r#type.as_deref() == Some(ACCOUNT_DOES_NOT_EXIST) => {
            tracing::warn!(directory = %w.directory, "the CA no longer knows the stored ACME account; creating a new one");
            account(w, true)
                .await?
                .new_order(&NewOrder::new(&ids))
                .await
                .map_err(|e| format!("new order: {e}"))?
        }
        Err(e) => return Err(format!("new order: {e}")),
    };

    let mut offers: Vec<Offer> = Vec::new();
    {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("authorization is {other:?}")),
            }
            let kind = match w.challenge {
                ChallengeKind::Http01 => ChallengeType::Http01,
                ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
            };
            let mut ch = authz
                .challenge(kind.clone())
                .ok_or_else(|| format!("the CA offers no {kind:?} challenge"))?;
            let key_auth = ch.key_authorization();
            offers.push(match w.challenge {
                ChallengeKind::Http01 => challenge::offer_http01(&ch.token, key_auth.as_str()),
                ChallengeKind::TlsAlpn01 => challenge::offer_tls_alpn01(
                    &w.host,
                    certs::tls_alpn01(&w.host, key_auth.digest().as_ref())?,
                ),
            });
            ch.set_ready()
                .await
                .map_err(|e| format!("challenge: {e}"))?;
        }
    }
    let status = order
        .poll_ready(&POLL)
        .await
        .map_err(|e| format!("waiting for validation: {e}"))?;
    if status != OrderStatus::Ready {
        return Err(format!(
            "the order is {status:?}: {}",
            why_invalid(&mut order).await
        ));
    }
    drop(offers);

    let (key_pem, csr) = certs::key_and_csr(&w.host)?;
    order
        .finalize_csr(&csr)
        .await
        .map_err(|e| format!("finalize: {e}"))?;
    let chain = order
        .poll_certificate(&POLL)
        .await
        .map_err(|e| format!("waiting for the certificate: {e}"))?;
    storage::write_pair(&w.storage, &w.host, &chain, &key_pem)
        .map_err(|e| format!("storing the certificate in `{}`: {e}", w.storage.display()))?;
    Ok(())
}

/// The CA's reason for a failed validation, as far as it says.
async fn why_invalid(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        if let Ok(state) = authz.refresh().await {
            for ch in &state.challenges {
                if let Some(e) = &ch.error {
                    reasons.push(e.to_string());
                }
            }
        }
    }
    if reasons.is_empty() {
        "the CA gave no reason".into()
    } else {
        reasons.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw;

    #[test]
    fn https_clients_build_with_system_roots_and_with_a_ca_root() {
        let w = Wanted::new(&raw::Acme::default(), "b.example");
        assert!(builder(&w).is_ok());

        let tmp = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = p.self_signed(&key).unwrap();
        let root = tmp.path().join("root.pem");
        std::fs::write(&root, ca.pem()).unwrap();
        let mut w = w;
        w.ca_root = Some(root);
        assert!(builder(&w).is_ok());
        w.ca_root = Some(tmp.path().join("missing.pem"));
        let err = builder(&w).err().unwrap();
        assert!(err.starts_with("caRoot `"), "{err}");
    }
}
