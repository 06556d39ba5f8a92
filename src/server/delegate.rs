//! Pingora's stream traits implemented by delegation, for Conduit's stream wrappers.

/// Implements `Shutdown`, `UniqueID`, `Ssl` (see `delegate_ssl`), `GetTimingDigest`, `GetProxyDigest`,
/// `GetSocketDigest` and `Peek` for `$ty` by forwarding to its `$field`, a Pingora `Stream`
/// (`Box<dyn IO>`). `AsyncRead`/`AsyncWrite` stay with the wrapper.
macro_rules! delegate_stream_traits {
    ($ty:ty, $field:tt) => {
        $crate::server::delegate::delegate_ssl!($ty, $field);
        $crate::server::delegate::delegate_other_traits!($ty, $field);
    };
}

/// All of [`delegate_stream_traits`] but `Ssl`, for wrappers that answer `Ssl` themselves.
macro_rules! delegate_other_traits {
    ($ty:ty, $field:tt) => {
        #[async_trait::async_trait]
        impl pingora::protocols::Shutdown for $ty {
            async fn shutdown(&mut self) {
                pingora::protocols::Shutdown::shutdown(&mut *self.$field).await
            }
        }

        impl pingora::protocols::UniqueID for $ty {
            fn id(&self) -> pingora::protocols::UniqueIDType {
                pingora::protocols::UniqueID::id(&*self.$field)
            }
        }

        impl pingora::protocols::GetTimingDigest for $ty {
            fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
                pingora::protocols::GetTimingDigest::get_timing_digest(&*self.$field)
            }
            fn get_read_pending_time(&self) -> std::time::Duration {
                pingora::protocols::GetTimingDigest::get_read_pending_time(&*self.$field)
            }
            fn get_write_pending_time(&self) -> std::time::Duration {
                pingora::protocols::GetTimingDigest::get_write_pending_time(&*self.$field)
            }
        }

        impl pingora::protocols::GetProxyDigest for $ty {
            fn get_proxy_digest(
                &self,
            ) -> Option<std::sync::Arc<pingora::protocols::raw_connect::ProxyDigest>> {
                pingora::protocols::GetProxyDigest::get_proxy_digest(&*self.$field)
            }
            fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
                pingora::protocols::GetProxyDigest::set_proxy_digest(&mut *self.$field, digest)
            }
        }

        impl pingora::protocols::GetSocketDigest for $ty {
            fn get_socket_digest(
                &self,
            ) -> Option<std::sync::Arc<pingora::protocols::SocketDigest>> {
                pingora::protocols::GetSocketDigest::get_socket_digest(&*self.$field)
            }
            fn set_socket_digest(&mut self, digest: pingora::protocols::SocketDigest) {
                pingora::protocols::GetSocketDigest::set_socket_digest(&mut *self.$field, digest)
            }
        }

        #[async_trait::async_trait]
        impl pingora::protocols::Peek for $ty {
            async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
                pingora::protocols::Peek::try_peek(&mut *self.$field, buf).await
            }
        }
    };
}

/// Implements Pingora's `Ssl` for `$ty` by forwarding to its `$field` (a `Stream`).
macro_rules! delegate_ssl {
    ($ty:ty, $field:tt) => {
        impl pingora::protocols::Ssl for $ty {
            fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
                pingora::protocols::Ssl::get_ssl(&*self.$field)
            }
            fn get_ssl_digest(&self) -> Option<std::sync::Arc<pingora::protocols::tls::SslDigest>> {
                pingora::protocols::Ssl::get_ssl_digest(&*self.$field)
            }
            fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
                pingora::protocols::Ssl::selected_alpn_proto(&*self.$field)
            }
        }
    };
}

pub(crate) use delegate_other_traits;
pub(crate) use delegate_ssl;
pub(crate) use delegate_stream_traits;
